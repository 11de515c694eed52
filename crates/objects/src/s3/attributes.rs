//! GetObjectAttributes: an object version's ETag, checksum, part layout,
//! storage class and size, each only when asked for.

use super::checksums::FULL_OBJECT;
use super::shown_version;
use crate::record::{Checksums, PartInfo};
use crate::store::ObjectStore;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

const MAX_PARTS: i32 = 1000;

fn checksum(sums: Checksums, checksum_type: Option<String>) -> Option<Checksum> {
    (sums != Checksums::default()).then(|| Checksum {
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_type: Some(ChecksumType::from(
            checksum_type.unwrap_or_else(|| FULL_OBJECT.to_string()),
        )),
    })
}

/// One page of a multipart object's parts, after `marker`.
fn parts_page(parts: &[PartInfo], marker: i32, max: i32) -> GetObjectAttributesParts {
    let after: Vec<&PartInfo> = parts
        .iter()
        .filter(|p| i64::from(p.number) > i64::from(marker))
        .collect();
    let max_len = usize::try_from(max).unwrap_or(0);
    let truncated = after.len() > max_len;
    let page: Vec<&PartInfo> = after.into_iter().take(max_len).collect();
    let next = page.last().and_then(|p| i32::try_from(p.number).ok());
    GetObjectAttributesParts {
        is_truncated: Some(truncated),
        max_parts: Some(max),
        next_part_number_marker: next,
        part_number_marker: Some(marker),
        parts: Some(
            page.into_iter()
                .map(|p| ObjectPart {
                    part_number: i32::try_from(p.number).ok(),
                    size: i64::try_from(p.size).ok(),
                    checksum_crc32: p.checksums.crc32.clone(),
                    checksum_crc32c: p.checksums.crc32c.clone(),
                    checksum_crc64nvme: p.checksums.crc64nvme.clone(),
                    checksum_sha1: p.checksums.sha1.clone(),
                    checksum_sha256: p.checksums.sha256.clone(),
                })
                .collect(),
        ),
        total_parts_count: i32::try_from(parts.len()).ok(),
    }
}

pub(super) async fn get_object_attributes(
    store: &ObjectStore,
    req: S3Request<GetObjectAttributesInput>,
) -> S3Result<S3Response<GetObjectAttributesOutput>> {
    let input = req.input;
    // SDKs send the list as one comma-separated header, which s3s keeps
    // whole; S3 accepts it either way.
    let attributes: Vec<&str> = input
        .object_attributes
        .iter()
        .flat_map(|a| a.as_str().split(','))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    let asked = |name: &str| attributes.iter().any(|a| a.eq_ignore_ascii_case(name));
    if let Some(unknown) = attributes.iter().find(|a| {
        ![
            ObjectAttributes::CHECKSUM,
            ObjectAttributes::ETAG,
            ObjectAttributes::OBJECT_PARTS,
            ObjectAttributes::OBJECT_SIZE,
            ObjectAttributes::STORAGE_CLASS,
        ]
        .iter()
        .any(|known| known.eq_ignore_ascii_case(a))
    }) {
        return Err(s3_error!(
            InvalidArgument,
            "unknown object attribute '{unknown}' (ETag, Checksum, ObjectParts, StorageClass and ObjectSize are)"
        ));
    }
    let max = input.max_parts.unwrap_or(MAX_PARTS).clamp(0, MAX_PARTS);
    let marker = input.part_number_marker.unwrap_or(0);
    let record = store
        .object_version(&input.bucket, &input.key, input.version_id.as_deref())
        .await?;
    let parts = if asked(ObjectAttributes::OBJECT_PARTS) && record.meta.parts.is_some() {
        store
            .object_parts(&input.bucket, &input.key, Some(&record.version))
            .await?
    } else {
        None
    };
    let meta = record.meta;
    Ok(S3Response::new(GetObjectAttributesOutput {
        checksum: asked(ObjectAttributes::CHECKSUM)
            .then(|| checksum(meta.checksums, meta.checksum_type))
            .flatten(),
        e_tag: asked(ObjectAttributes::ETAG).then_some(ETag::Strong(record.etag)),
        object_parts: parts.map(|p| parts_page(&p, marker, max)),
        object_size: asked(ObjectAttributes::OBJECT_SIZE)
            .then(|| i64::try_from(record.size).unwrap_or(i64::MAX)),
        storage_class: asked(ObjectAttributes::STORAGE_CLASS)
            .then(|| StorageClass::from_static(StorageClass::STANDARD)),
        version_id: shown_version(&record.version),
        last_modified: Some(super::timestamp(record.modified_ms)),
        ..Default::default()
    }))
}
