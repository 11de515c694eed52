//! Object and bucket tagging: PutObjectTagging and friends, tag sets given
//! at upload (`x-amz-tagging`, a form's `tagging` field), and S3's limits
//! on them.

use super::bucket_config;
use crate::error::Error;
use crate::index::buckets::Setting;
use crate::record::Tag;
use crate::store::ObjectStore;
use s3s::dto::{self, *};
use s3s::{s3_error, S3Request, S3Response, S3Result};

/// S3's limits: tags per object and per bucket, and lengths in characters.
const MAX_OBJECT_TAGS: usize = 10;
const MAX_BUCKET_TAGS: usize = 50;
const MAX_KEY_CHARS: usize = 128;
const MAX_VALUE_CHARS: usize = 256;

/// A tag set checked against S3's rules (count, lengths, unique keys),
/// sorted by key: S3 keeps a tag set as a map, so it answers in key order
/// whatever the order it was given in.
fn checked(mut tags: Vec<Tag>, max: usize) -> S3Result<Vec<Tag>> {
    if tags.len() > max {
        return Err(s3_error!(
            InvalidTag,
            "a tag set may hold at most {max} tags; this one has {}",
            tags.len()
        ));
    }
    for tag in &tags {
        if tag.key.is_empty() || tag.key.chars().count() > MAX_KEY_CHARS {
            return Err(s3_error!(
                InvalidTag,
                "tag keys must be 1 to {MAX_KEY_CHARS} characters long"
            ));
        }
        if tag.value.chars().count() > MAX_VALUE_CHARS {
            return Err(s3_error!(
                InvalidTag,
                "tag values must be at most {MAX_VALUE_CHARS} characters long"
            ));
        }
    }
    tags.sort_by(|a, b| a.key.cmp(&b.key));
    if let Some(twice) = tags.windows(2).find(|w| w[0].key == w[1].key) {
        return Err(s3_error!(
            InvalidTag,
            "tag key '{}' is given more than once",
            twice[0].key
        ));
    }
    Ok(tags)
}

/// The tag set of a Tagging document, checked against the limit `max`.
fn document_tags(tagging: Tagging, max: usize) -> S3Result<Vec<Tag>> {
    let tags = tagging
        .tag_set
        .into_iter()
        .map(|t| Tag {
            key: t.key.unwrap_or_default(),
            value: t.value.unwrap_or_default(),
        })
        .collect();
    checked(tags, max)
}

/// The tag set of an `x-amz-tagging` header (a URL query: `k=v&k2=v2`, a
/// key without `=` has an empty value).
pub(super) fn header_tags(header: Option<&str>) -> S3Result<Vec<Tag>> {
    let Some(header) = header.filter(|h| !h.is_empty()) else {
        return Ok(Vec::new());
    };
    let mut tags = Vec::new();
    for pair in header.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        tags.push(Tag {
            key: decode_query_part(key)?,
            value: decode_query_part(value)?,
        });
    }
    checked(tags, MAX_OBJECT_TAGS)
}

fn decode_query_part(part: &str) -> S3Result<String> {
    urlencoding::decode(&part.replace('+', " "))
        .map(|s| s.into_owned())
        .map_err(|_| s3_error!(InvalidArgument, "x-amz-tagging is not URL-encoded UTF-8"))
}

/// A tag set as the S3 documents carry it.
pub(super) fn tag_set(tags: &[Tag]) -> TagSet {
    tags.iter()
        .map(|t| dto::Tag {
            key: Some(t.key.clone()),
            value: Some(t.value.clone()),
        })
        .collect()
}

pub(super) async fn get_object_tagging(
    store: &ObjectStore,
    req: S3Request<GetObjectTaggingInput>,
) -> S3Result<S3Response<GetObjectTaggingOutput>> {
    let input = req.input;
    let record = store
        .object_version(&input.bucket, &input.key, input.version_id.as_deref())
        .await?;
    Ok(S3Response::new(GetObjectTaggingOutput {
        tag_set: tag_set(&record.meta.tags),
        version_id: super::shown_version(&record.version),
    }))
}

pub(super) async fn put_object_tagging(
    store: &ObjectStore,
    req: S3Request<PutObjectTaggingInput>,
) -> S3Result<S3Response<PutObjectTaggingOutput>> {
    let input = req.input;
    let tags = document_tags(input.tagging, MAX_OBJECT_TAGS)?;
    let version = store
        .update_object_meta(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            move |meta| meta.tags = tags,
        )
        .await?;
    Ok(S3Response::new(PutObjectTaggingOutput {
        version_id: super::shown_version(&version),
    }))
}

pub(super) async fn delete_object_tagging(
    store: &ObjectStore,
    req: S3Request<DeleteObjectTaggingInput>,
) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
    let input = req.input;
    let version = store
        .update_object_meta(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            |meta| meta.tags.clear(),
        )
        .await?;
    Ok(S3Response::with_status(
        DeleteObjectTaggingOutput {
            version_id: super::shown_version(&version),
        },
        http::StatusCode::NO_CONTENT,
    ))
}

pub(super) async fn get_bucket_tagging(
    store: &ObjectStore,
    req: S3Request<GetBucketTaggingInput>,
) -> S3Result<S3Response<GetBucketTaggingOutput>> {
    let config = bucket_config(store, &req.input.bucket).await?;
    match config.tags {
        Some(tags) => Ok(S3Response::new(GetBucketTaggingOutput {
            tag_set: tag_set(&tags),
        })),
        None => Err(s3_error!(NoSuchTagSet)),
    }
}

pub(super) async fn put_bucket_tagging(
    store: &ObjectStore,
    req: S3Request<PutBucketTaggingInput>,
) -> S3Result<S3Response<PutBucketTaggingOutput>> {
    let input = req.input;
    let tags = document_tags(input.tagging, MAX_BUCKET_TAGS)?;
    let json = serde_json::to_string(&tags).map_err(Error::from)?;
    store
        .set_bucket(&input.bucket, Setting::Tags, Some(json))
        .await?;
    Ok(S3Response::new(PutBucketTaggingOutput::default()))
}

pub(super) async fn delete_bucket_tagging(
    store: &ObjectStore,
    req: S3Request<DeleteBucketTaggingInput>,
) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
    store
        .set_bucket(&req.input.bucket, Setting::Tags, None)
        .await?;
    Ok(S3Response::with_status(
        DeleteBucketTaggingOutput::default(),
        http::StatusCode::NO_CONTENT,
    ))
}
