//! Multipart uploads: create, upload part (and part copy), complete,
//! abort, list parts, list uploads.
//!
//! A part uploaded again replaces the earlier upload of its number, and a
//! completion uses what is stored for each number then (its list may name
//! a number more than once, with an ETag of either upload, as clients that
//! retry a part do). A completed upload's answer is kept for an hour, so a
//! completion repeated after a lost response answers the same.

use super::checksums::{
    checksums_of, declared_checksums, enable, hasher_for, multipart_checksum, verify, Algorithm,
};
use super::conditions::{copy_source_conditions, precondition_failed, Conditions, WriteConditions};
use super::objects::readable_source;
use super::{acl, copy_source, shown_version, tagging, timestamp, MAX_PART_NUMBER, MIN_PART_SIZE};
use crate::access::{caller, owner_id};
use crate::error::Error;
use crate::index::{self, uploads::PartRow};
use crate::record::{
    Body, Checksums, Completion, ObjectRecord, PartInfo, UploadMeta, NULL_VERSION,
};
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

/// Parses `bytes=first-last` of UploadPartCopy: InvalidArgument when it is
/// not of that form, InvalidRange when it is outside the source.
fn copy_range(range: Option<&str>, size: u64) -> S3Result<std::ops::Range<u64>> {
    let Some(range) = range else {
        return Ok(0..size);
    };
    let parsed = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    match parsed {
        None => Err(s3_error!(
            InvalidArgument,
            "x-amz-copy-source-range must be of the form bytes=first-last"
        )),
        Some((first, last)) if first <= last && last < size => Ok(first..last + 1),
        Some(_) => Err(s3_error!(
            InvalidRange,
            "x-amz-copy-source-range must be within the source object"
        )),
    }
}

/// The checksum algorithm of an upload, if it declared one.
fn upload_algorithm(meta: &UploadMeta) -> S3Result<Option<Algorithm>> {
    meta.checksum_algorithm
        .as_deref()
        .map(Algorithm::parse)
        .transpose()
}

/// A hasher for a part: what the request names, plus the upload's
/// algorithm (every part carries it, so the completion can combine them).
fn part_hasher(
    upload: Option<Algorithm>,
    requested: Option<&ChecksumAlgorithm>,
    given: &Checksums,
) -> S3Result<ChecksumHasher> {
    let mut hasher = hasher_for(requested, given)?;
    if let Some(algorithm) = upload {
        enable(&mut hasher, algorithm);
    }
    Ok(hasher)
}

pub(super) async fn create_multipart_upload(
    store: &ObjectStore,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let initiator = caller(&req.extensions).principal.id().to_string();
    let input = req.input;
    store.require_bucket(&input.bucket).await?;
    let mut object = ObjectStore::meta_from(
        input.content_type,
        input.content_encoding,
        input.content_disposition,
        input.content_language,
        input.cache_control,
        input.expires,
        input.metadata,
    );
    object.acl = acl::new_object_acl!(input)?;
    object.tags = tagging::header_tags(input.tagging.as_deref())?;
    let algorithm = input
        .checksum_algorithm
        .as_ref()
        .map(|a| Algorithm::parse(a.as_str()))
        .transpose()?;
    let checksum_type = match (algorithm, input.checksum_type.as_ref()) {
        (None, Some(_)) => {
            return Err(s3_error!(
                InvalidRequest,
                "x-amz-checksum-type needs x-amz-checksum-algorithm"
            ))
        }
        (None, None) => None,
        (Some(algorithm), given) => {
            let checksum_type = given.map_or(algorithm.default_type(), |t| t.as_str());
            algorithm.check_type(checksum_type)?;
            Some(checksum_type.to_string())
        }
    };
    object.checksum_type = checksum_type.clone();
    let meta = UploadMeta {
        object,
        checksum_algorithm: algorithm.map(|a| a.name().to_string()),
        initiator: Some(initiator),
    };
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
        checksum_type: checksum_type.map(ChecksumType::from),
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
    let upload = store
        .check_upload(&input.bucket, &input.key, &input.upload_id)
        .await?;
    let headers = checksums_of(
        input.checksum_crc32,
        input.checksum_crc32c,
        input.checksum_sha1,
        input.checksum_sha256,
        input.checksum_crc64nvme,
    );
    let hasher = part_hasher(
        upload_algorithm(&upload)?,
        input.checksum_algorithm.as_ref(),
        &headers,
    )?;
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
    let caller = caller(&req.extensions);
    let input = req.input;
    check_part_number(input.part_number)?;
    let (src_bucket, src_key, src_version) = copy_source(&input.copy_source)?;
    let upload = store
        .check_upload(&input.bucket, &input.key, &input.upload_id)
        .await?;
    let source = readable_source(
        store,
        &caller,
        &src_bucket,
        &src_key,
        src_version.as_deref(),
    )
    .await?;
    copy_source_conditions!(input).check(&source, precondition_failed)?;
    let range = copy_range(input.copy_source_range.as_deref(), source.size)?;
    let hasher = part_hasher(upload_algorithm(&upload)?, None, &Checksums::default())?;
    let received = store
        .assemble(vec![(source.body.clone(), range)], hasher, false)
        .await?;
    let etag = hex::encode(received.md5);
    let checksums = Checksums::from(received.checksum.clone());
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
            checksum_crc32: checksums.crc32,
            checksum_crc32c: checksums.crc32c,
            checksum_sha1: checksums.sha1,
            checksum_sha256: checksums.sha256,
            checksum_crc64nvme: checksums.crc64nvme,
        }),
        copy_source_version_id: shown_version(&source.version),
        ..Default::default()
    }))
}

/// The parts a completion names, checked against what is stored: numbers
/// in ascending order (a number may repeat), each uploaded, its ETag (and
/// checksum, if given) those of the stored part or of an earlier upload
/// of it named alongside, every part but the last at least 5 MiB.
fn chosen_parts<'a>(
    requested: &[CompletedPart],
    stored: &'a [PartRow],
) -> S3Result<Vec<&'a PartRow>> {
    let mut chosen: Vec<&PartRow> = Vec::new();
    let mut matched: Vec<bool> = Vec::new();
    let mut previous = 0;
    for part in requested {
        let number = part.part_number.unwrap_or(0);
        if number < previous {
            return Err(s3_error!(InvalidPartOrder));
        }
        let found = stored
            .iter()
            .find(|p| p.number == number)
            .ok_or_else(|| s3_error!(InvalidPart, "part {number} was not uploaded"))?;
        let etag_ok = part.e_tag.as_ref().is_none_or(|e| e.value() == found.etag);
        let given = checksums_of(
            part.checksum_crc32.clone(),
            part.checksum_crc32c.clone(),
            part.checksum_sha1.clone(),
            part.checksum_sha256.clone(),
            part.checksum_crc64nvme.clone(),
        );
        let checksum_ok = Algorithm::ALL.iter().all(|a| match a.of(&given) {
            Some(value) => a.of(&found.checksums).as_ref() == Some(value),
            None => true,
        });
        if number == previous {
            let last = matched.len() - 1;
            matched[last] |= etag_ok && checksum_ok;
        } else {
            chosen.push(found);
            matched.push(etag_ok && checksum_ok);
        }
        previous = number;
    }
    if let Some(i) = matched.iter().position(|ok| !ok) {
        return Err(s3_error!(
            InvalidPart,
            "part {}'s ETag or checksum does not match the uploaded part",
            chosen[i].number
        ));
    }
    for part in chosen.iter().take(chosen.len().saturating_sub(1)) {
        if part.size < MIN_PART_SIZE {
            return Err(s3_error!(
                EntityTooSmall,
                "part {} is smaller than 5 MiB and not the last part",
                part.number
            ));
        }
    }
    Ok(chosen)
}

/// The checksums of the object a completion makes: the upload's algorithm
/// combined as its type says, or (for an upload that named none) a
/// composite of any algorithm every part carries.
fn object_checksums(
    upload: &UploadMeta,
    parts: &[PartInfo],
) -> S3Result<(Checksums, Option<String>)> {
    let mut sums = Checksums::default();
    if let Some(algorithm) = upload_algorithm(upload)? {
        let checksum_type = upload
            .object
            .checksum_type
            .clone()
            .unwrap_or_else(|| algorithm.default_type().to_string());
        algorithm.set(
            &mut sums,
            multipart_checksum(algorithm, &checksum_type, parts),
        );
        return Ok((sums, Some(checksum_type)));
    }
    for algorithm in Algorithm::ALL {
        let checksum_type = algorithm.default_type();
        algorithm.set(
            &mut sums,
            multipart_checksum(algorithm, checksum_type, parts),
        );
    }
    let checksum_type = Algorithm::ALL
        .into_iter()
        .find(|a| a.of(&sums).is_some())
        .map(|a| a.default_type().to_string());
    Ok((sums, checksum_type))
}

/// Refuses a completion whose whole-object checksum headers disagree with
/// the object's.
fn check_declared(declared: &Checksums, computed: &Checksums) -> S3Result<()> {
    for algorithm in Algorithm::ALL {
        if let Some(want) = algorithm.of(declared) {
            if algorithm.of(computed).as_ref() != Some(want) {
                return Err(s3_error!(
                    BadDigest,
                    "the {} checksum you specified did not match the object's",
                    algorithm.name()
                ));
            }
        }
    }
    Ok(())
}

fn completion_output(
    bucket: &str,
    key: &str,
    completion: Completion,
) -> CompleteMultipartUploadOutput {
    let sums = completion.checksums;
    CompleteMultipartUploadOutput {
        bucket: Some(bucket.to_string()),
        key: Some(key.to_string()),
        location: Some(format!("/{bucket}/{key}")),
        e_tag: Some(ETag::Strong(completion.etag)),
        version_id: shown_version(&completion.version),
        checksum_type: completion.checksum_type.map(ChecksumType::from),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_crc64nvme: sums.crc64nvme,
        ..Default::default()
    }
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
    let numbers: Vec<u32> = requested
        .iter()
        .filter_map(|p| p.part_number.and_then(|n| u32::try_from(n).ok()))
        .collect();
    let (bucket, key, upload) = (
        input.bucket.clone(),
        input.key.clone(),
        input.upload_id.clone(),
    );
    let state = store
        .inner
        .index
        .read_async(move |conn| match index::uploads::read(conn, &upload)? {
            Some(found) => {
                let meta = index::uploads::upload_of(Some(found), &bucket, &key)?;
                Ok(Ok((meta, index::uploads::parts(conn, &upload)?)))
            }
            None => match index::uploads::completion(conn, &upload, &bucket, &key)? {
                Some(done) => Ok(Err(done)),
                None => Err(s3_error!(NoSuchUpload).into()),
            },
        })
        .await?;
    let (upload_meta, stored) = match state {
        Ok(open) => open,
        Err(done) => {
            let mut named = numbers.clone();
            named.dedup();
            if named != done.parts {
                return Err(s3_error!(
                    NoSuchUpload,
                    "the upload was completed with other parts"
                ));
            }
            return Ok(S3Response::new(completion_output(
                &input.bucket,
                &input.key,
                done,
            )));
        }
    };
    let chosen = chosen_parts(&requested, &stored)?;
    if let Some(size) = input.mpu_object_size {
        let total: u64 = chosen.iter().map(|p| p.size).sum();
        if u64::try_from(size).ok() != Some(total) {
            return Err(s3_error!(
                InvalidRequest,
                "x-amz-mp-object-size is {size}, the parts add up to {total}"
            ));
        }
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
    let layout: Vec<PartInfo> = chosen
        .iter()
        .map(|p| PartInfo {
            number: u32::try_from(p.number).unwrap_or(0),
            size: p.size,
            etag: p.etag.clone(),
            checksums: p.checksums.clone(),
        })
        .collect();
    let (checksums, checksum_type) = object_checksums(&upload_meta, &layout)?;
    check_declared(
        &checksums_of(
            input.checksum_crc32,
            input.checksum_crc32c,
            input.checksum_sha1,
            input.checksum_sha256,
            input.checksum_crc64nvme,
        ),
        &checksums,
    )?;
    let sources: Vec<(Body, std::ops::Range<u64>)> = chosen
        .iter()
        .map(|p| (Body::File(p.file.clone()), 0..p.size))
        .collect();
    let assembled = store.concatenate(sources).await?;
    store.crash_point("object_complete:assembled");
    let mut meta = upload_meta.object;
    meta.parts = Some(u32::try_from(layout.len()).unwrap_or(u32::MAX));
    meta.checksums = checksums.clone();
    meta.checksum_type = checksum_type.clone();
    let record = ObjectRecord {
        key: input.key.clone(),
        version: NULL_VERSION.to_string(),
        size: assembled.1,
        etag: etag.clone(),
        modified_ms: now_ms(),
        meta,
        body: Body::File(assembled.0.clone()),
    };
    let conditions = WriteConditions {
        if_match: input.if_match,
        if_none_match: input.if_none_match,
    };
    let (bucket, upload) = (input.bucket.clone(), input.upload_id.clone());
    let key = input.key.clone();
    let mut completion = Completion {
        etag,
        version: NULL_VERSION.to_string(),
        checksums,
        checksum_type,
        parts: layout.iter().map(|p| p.number).collect(),
    };
    let done = completion.clone();
    let result = store
        .inner
        .index
        .write(move |conn| {
            index::uploads::upload_of(index::uploads::read(conn, &upload)?, &bucket, &key)?;
            conditions.check(index::objects::read(conn, &bucket, &key)?.as_ref())?;
            let parts: Vec<String> = index::uploads::parts(conn, &upload)?
                .into_iter()
                .map(|p| p.file)
                .collect();
            let mut record = record;
            let written = index::objects::write(conn, &bucket, &mut record, Some(&layout))?;
            let mut done = done;
            done.version = written.version.clone();
            index::uploads::complete(conn, &upload, &done, now_ms())?;
            Ok((
                written.version,
                parts
                    .into_iter()
                    .chain(written.replaced)
                    .collect::<Vec<_>>(),
            ))
        })
        .await;
    match result {
        Ok((version, files)) => {
            store.crash_point("object_complete:recorded");
            store.remove_files(files).await;
            completion.version = version;
        }
        Err(err) => {
            store.remove_files(vec![assembled.0]).await;
            return Err(err.into());
        }
    }
    Ok(S3Response::new(completion_output(
        &input.bucket,
        &input.key,
        completion,
    )))
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
    Ok(S3Response::with_status(
        AbortMultipartUploadOutput::default(),
        http::StatusCode::NO_CONTENT,
    ))
}

fn party(id: &str) -> (Initiator, Owner) {
    (
        Initiator {
            display_name: Some(id.to_string()),
            id: Some(id.to_string()),
        },
        Owner {
            display_name: Some(id.to_string()),
            id: Some(id.to_string()),
        },
    )
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
    let (meta, parts) = store
        .inner
        .index
        .read_async(move |conn| {
            let meta =
                index::uploads::upload_of(index::uploads::read(conn, &upload)?, &bucket, &key)?;
            Ok((meta, index::uploads::parts(conn, &upload)?))
        })
        .await?;
    let after: Vec<&PartRow> = parts.iter().filter(|p| p.number > marker).collect();
    let truncated = after.len() > max;
    let page: Vec<&PartRow> = after.into_iter().take(max).collect();
    let next = truncated.then(|| page.last().map(|p| p.number)).flatten();
    let (initiator, owner) = party(meta.initiator.as_deref().unwrap_or_default());
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: next,
        max_parts: Some(i32::try_from(max).unwrap_or(1000)),
        is_truncated: Some(truncated),
        initiator: Some(initiator),
        owner: Some(owner),
        checksum_algorithm: meta.checksum_algorithm.map(ChecksumAlgorithm::from),
        checksum_type: meta.object.checksum_type.map(ChecksumType::from),
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
    let config = super::bucket_config(store, &input.bucket).await?;
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
    let bucket_owner = owner_id(config.owner.as_deref()).to_string();
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        key_marker: input.key_marker,
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(i32::try_from(max).unwrap_or(1000)),
        is_truncated: Some(truncated),
        next_key_marker: last.as_ref().map(|l| l.key.clone()),
        next_upload_id_marker: last.map(|l| l.id),
        uploads: Some(
            page.into_iter()
                .map(|u| {
                    let (initiator, owner) =
                        party(u.meta.initiator.as_deref().unwrap_or(&bucket_owner));
                    MultipartUpload {
                        key: Some(u.key),
                        upload_id: Some(u.id),
                        initiated: Some(timestamp(u.initiated_ms)),
                        initiator: Some(initiator),
                        owner: Some(owner),
                        checksum_algorithm: u.meta.checksum_algorithm.map(ChecksumAlgorithm::from),
                        checksum_type: u.meta.object.checksum_type.map(ChecksumType::from),
                        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                    }
                })
                .collect(),
        ),
        ..Default::default()
    }))
}

impl ObjectStore {
    /// The open upload `upload` of `bucket/key`: NoSuchBucket, NoSuchUpload.
    async fn check_upload(&self, bucket: &str, key: &str, upload: &str) -> S3Result<UploadMeta> {
        let (bucket, key, upload) = (bucket.to_string(), key.to_string(), upload.to_string());
        Ok(self
            .inner
            .index
            .read_async(move |conn| {
                if !index::buckets::exists(conn, &bucket)? {
                    return Err(s3_error!(NoSuchBucket).into());
                }
                index::uploads::upload_of(index::uploads::read(conn, &upload)?, &bucket, &key)
            })
            .await?)
    }

    /// Records part `number` of `upload` (its body already durable),
    /// replacing an earlier upload of that number, whose file is removed
    /// once the record is durable.
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
                self.crash_point("object_part:recorded");
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
