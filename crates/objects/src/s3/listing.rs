//! Listing operations: ListObjects v1 and v2, ListObjectVersions.

use super::{timestamp, DEFAULT_MAX_KEYS};
use crate::index::{self, listing::Entry};
use crate::store::ObjectStore;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

fn object_entry(record: &index::listing::Row) -> Object {
    Object {
        key: Some(record.key.clone()),
        size: Some(i64::try_from(record.size).unwrap_or(i64::MAX)),
        e_tag: Some(ETag::Strong(record.etag.clone())),
        last_modified: Some(timestamp(record.modified_ms)),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

fn max_keys(given: Option<i32>) -> S3Result<usize> {
    match given {
        None => Ok(DEFAULT_MAX_KEYS as usize),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok(usize::try_from(n.min(DEFAULT_MAX_KEYS)).unwrap_or(0)),
    }
}

fn url_encoded(encoding: Option<&EncodingType>) -> S3Result<bool> {
    match encoding {
        None => Ok(false),
        Some(e) if e.as_str() == EncodingType::URL => Ok(true),
        Some(_) => Err(s3_error!(InvalidArgument, "encoding-type must be 'url'")),
    }
}

/// `s` percent-encoded as S3 does for `encoding-type=url` (everything but
/// unreserved characters and `/`).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Listing {
    objects: Vec<index::listing::Row>,
    prefixes: Vec<String>,
    truncated: bool,
    /// The last key or common prefix returned.
    last: Option<String>,
}

impl ObjectStore {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: &str,
        max: usize,
    ) -> S3Result<Listing> {
        let (bucket, prefix, after) = (bucket.to_string(), prefix.to_string(), after.to_string());
        let delimiter = delimiter.filter(|d| !d.is_empty()).map(str::to_string);
        let (entries, truncated) = self
            .inner
            .index
            .read_async(move |conn| {
                if !index::buckets::exists(conn, &bucket)? {
                    return Err(s3_error!(NoSuchBucket).into());
                }
                index::listing::entries(conn, &bucket, &prefix, delimiter.as_deref(), &after, max)
            })
            .await?;
        let mut listing = Listing {
            objects: Vec::new(),
            prefixes: Vec::new(),
            truncated,
            last: None,
        };
        for entry in entries {
            match entry {
                Entry::Object(row) => {
                    listing.last = Some(row.key.clone());
                    listing.objects.push(row);
                }
                Entry::Prefix(p) => {
                    listing.last = Some(p.clone());
                    listing.prefixes.push(p);
                }
            }
        }
        Ok(listing)
    }
}

fn common_prefixes(prefixes: &[String], encode: bool) -> Option<Vec<CommonPrefix>> {
    (!prefixes.is_empty()).then(|| {
        prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(if encode { url_encode(p) } else { p.clone() }),
            })
            .collect()
    })
}

fn encode_opt(s: Option<String>, encode: bool) -> Option<String> {
    s.map(|s| if encode { url_encode(&s) } else { s })
}

pub(super) async fn list_objects(
    store: &ObjectStore,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let input = req.input;
    let encode = url_encoded(input.encoding_type.as_ref())?;
    let max = max_keys(input.max_keys)?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let marker = input.marker.clone().unwrap_or_default();
    let listing = store
        .list(
            &input.bucket,
            &prefix,
            input.delimiter.as_deref(),
            &marker,
            max,
        )
        .await?;
    let next_marker = (listing.truncated && input.delimiter.is_some())
        .then(|| listing.last.clone())
        .flatten();
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        prefix: Some(encode_opt(input.prefix, encode).unwrap_or_default()),
        marker: Some(encode_opt(input.marker, encode).unwrap_or_default()),
        max_keys: Some(i32::try_from(max).unwrap_or(DEFAULT_MAX_KEYS)),
        delimiter: encode_opt(input.delimiter, encode),
        is_truncated: Some(listing.truncated),
        next_marker: encode_opt(next_marker, encode),
        contents: Some(
            listing
                .objects
                .iter()
                .map(|r| {
                    let mut o = object_entry(r);
                    o.key = encode_opt(o.key, encode);
                    o.owner = Some(Owner {
                        display_name: Some("roost".into()),
                        id: Some("roost".into()),
                    });
                    o
                })
                .collect(),
        ),
        common_prefixes: common_prefixes(&listing.prefixes, encode),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

pub(super) async fn list_objects_v2(
    store: &ObjectStore,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let input = req.input;
    let encode = url_encoded(input.encoding_type.as_ref())?;
    let max = max_keys(input.max_keys)?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let after = match &input.continuation_token {
        Some(token) => hex::decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                s3_error!(
                    InvalidArgument,
                    "The continuation token provided is incorrect"
                )
            })?,
        None => input.start_after.clone().unwrap_or_default(),
    };
    let listing = store
        .list(
            &input.bucket,
            &prefix,
            input.delimiter.as_deref(),
            &after,
            max,
        )
        .await?;
    let next = listing
        .truncated
        .then(|| listing.last.as_ref().map(hex::encode))
        .flatten();
    let fetch_owner = input.fetch_owner.unwrap_or(false);
    let contents: Vec<Object> = listing
        .objects
        .iter()
        .map(|r| {
            let mut o = object_entry(r);
            o.key = encode_opt(o.key, encode);
            if fetch_owner {
                o.owner = Some(Owner {
                    display_name: Some("roost".into()),
                    id: Some("roost".into()),
                });
            }
            o
        })
        .collect();
    let key_count = contents.len() + listing.prefixes.len();
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(encode_opt(input.prefix, encode).unwrap_or_default()),
        max_keys: Some(i32::try_from(max).unwrap_or(DEFAULT_MAX_KEYS)),
        key_count: Some(i32::try_from(key_count).unwrap_or(i32::MAX)),
        continuation_token: input.continuation_token,
        next_continuation_token: next,
        is_truncated: Some(listing.truncated),
        start_after: encode_opt(input.start_after, encode),
        delimiter: encode_opt(input.delimiter, encode),
        contents: Some(contents),
        common_prefixes: common_prefixes(&listing.prefixes, encode),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

pub(super) async fn list_object_versions(
    store: &ObjectStore,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let input = req.input;
    let encode = url_encoded(input.encoding_type.as_ref())?;
    let max = max_keys(input.max_keys)?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let marker = input.key_marker.clone().unwrap_or_default();
    let listing = store
        .list(
            &input.bucket,
            &prefix,
            input.delimiter.as_deref(),
            &marker,
            max,
        )
        .await?;
    let next_key = listing.truncated.then(|| listing.last.clone()).flatten();
    let versions = listing
        .objects
        .iter()
        .map(|r| ObjectVersion {
            key: encode_opt(Some(r.key.clone()), encode),
            version_id: Some("null".into()),
            is_latest: Some(true),
            size: Some(i64::try_from(r.size).unwrap_or(i64::MAX)),
            e_tag: Some(ETag::Strong(r.etag.clone())),
            last_modified: Some(timestamp(r.modified_ms)),
            storage_class: Some(ObjectVersionStorageClass::from_static(
                ObjectVersionStorageClass::STANDARD,
            )),
            owner: Some(Owner {
                display_name: Some("roost".into()),
                id: Some("roost".into()),
            }),
            ..Default::default()
        })
        .collect();
    Ok(S3Response::new(ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: Some(encode_opt(input.prefix, encode).unwrap_or_default()),
        key_marker: Some(encode_opt(input.key_marker, encode).unwrap_or_default()),
        version_id_marker: Some(input.version_id_marker.unwrap_or_default()),
        max_keys: Some(i32::try_from(max).unwrap_or(DEFAULT_MAX_KEYS)),
        delimiter: encode_opt(input.delimiter, encode),
        is_truncated: Some(listing.truncated),
        next_version_id_marker: next_key.as_ref().map(|_| "null".to_string()),
        next_key_marker: encode_opt(next_key, encode),
        versions: Some(versions),
        common_prefixes: common_prefixes(&listing.prefixes, encode),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}
