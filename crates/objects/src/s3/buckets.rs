//! Bucket operations: list, create, head, delete, location, versioning.

use super::{acl, bucket_config, timestamp};
use crate::access::{caller, Principal};
use crate::error::Error;
use crate::index::buckets::Setting;
use crate::record::Versioning;
use crate::store::ObjectStore;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

/// The region whose CreateBucket of a bucket one already owns succeeds
/// (S3's legacy behaviour there); everywhere else it is
/// BucketAlreadyOwnedByYou.
const LEGACY_REGION: &str = "us-east-1";
const MAX_BUCKETS: i32 = 10_000;

pub(super) async fn list_buckets(
    store: &ObjectStore,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let who = caller(&req.extensions).principal;
    let input = req.input;
    let after = match input.continuation_token.as_deref() {
        Some(token) => hex::decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| s3_error!(InvalidArgument, "the continuation token is not valid"))?,
        None => String::new(),
    };
    let max = usize::try_from(
        input
            .max_buckets
            .unwrap_or(MAX_BUCKETS)
            .clamp(1, MAX_BUCKETS),
    )
    .unwrap_or(1);
    let prefix = input.prefix.clone().unwrap_or_default();
    let mine: Vec<_> = store
        .list_buckets()
        .await?
        .into_iter()
        .filter(|b| who.may_use(b.owner.as_deref()))
        .filter(|b| b.name.starts_with(&prefix) && b.name > after)
        .collect();
    let truncated = mine.len() > max;
    let page: Vec<_> = mine.into_iter().take(max).collect();
    let next = truncated
        .then(|| page.last().map(|b| hex::encode(&b.name)))
        .flatten();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(
            page.into_iter()
                .map(|b| Bucket {
                    name: Some(b.name),
                    creation_date: Some(timestamp(b.created_ms)),
                    bucket_region: None,
                })
                .collect(),
        ),
        owner: Some(Owner {
            display_name: Some(who.id().to_string()),
            id: Some(who.id().to_string()),
        }),
        continuation_token: next,
        prefix: input.prefix,
    }))
}

pub(super) async fn create_bucket(
    store: &ObjectStore,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let who = caller(&req.extensions).principal;
    let owner = match &who {
        Principal::Admin => None,
        Principal::App(app) => Some(app.clone()),
        Principal::Anonymous => return Err(s3_error!(AccessDenied, "Signature is required")),
    };
    let legacy_region = req.region.as_ref().map(|r| r.as_str()) == Some(LEGACY_REGION);
    let input = req.input;
    no_grant_headers(&input)?;
    let acl = acl::canned(input.acl.as_ref().map(|a| a.as_str()))?;
    let name = input.bucket;
    match store
        .create_bucket_with_acl(&name, owner.as_deref(), acl)
        .await
    {
        Ok(_) => {}
        Err(Error::BucketExists(_)) => {
            let existing = store.bucket(&name).await?;
            match existing {
                Some(b) if who.may_use(b.owner.as_deref()) && legacy_region => {}
                Some(b) if who.may_use(b.owner.as_deref()) => {
                    return Err(s3_error!(BucketAlreadyOwnedByYou))
                }
                _ => return Err(s3_error!(BucketAlreadyExists)),
            }
        }
        Err(err) => return Err(err.into()),
    }
    Ok(S3Response::new(CreateBucketOutput {
        location: Some(format!("/{name}")),
    }))
}

fn no_grant_headers(input: &CreateBucketInput) -> S3Result<()> {
    let grants = [
        &input.grant_full_control,
        &input.grant_read,
        &input.grant_read_acp,
        &input.grant_write,
        &input.grant_write_acp,
    ];
    if grants.iter().any(|g| g.is_some()) {
        return Err(s3_error!(
            NotImplemented,
            "x-amz-grant-* headers are not supported; use a canned ACL (x-amz-acl)"
        ));
    }
    if input.object_lock_enabled_for_bucket == Some(true) {
        return Err(s3_error!(NotImplemented, "object lock is not supported"));
    }
    Ok(())
}

pub(super) async fn head_bucket(
    store: &ObjectStore,
    req: S3Request<HeadBucketInput>,
) -> S3Result<S3Response<HeadBucketOutput>> {
    store.require_bucket(&req.input.bucket).await?;
    Ok(S3Response::new(HeadBucketOutput::default()))
}

pub(super) async fn delete_bucket(
    store: &ObjectStore,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    ObjectStore::delete_bucket(store, &req.input.bucket, false).await?;
    Ok(S3Response::new(DeleteBucketOutput::default()))
}

pub(super) async fn get_bucket_location(
    store: &ObjectStore,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    store.require_bucket(&req.input.bucket).await?;
    Ok(S3Response::new(GetBucketLocationOutput {
        location_constraint: None,
    }))
}

pub(super) async fn get_bucket_versioning(
    store: &ObjectStore,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    let config = bucket_config(store, &req.input.bucket).await?;
    Ok(S3Response::new(GetBucketVersioningOutput {
        status: config
            .versioning
            .status()
            .map(BucketVersioningStatus::from_static),
        mfa_delete: None,
    }))
}

/// Enables or suspends versioning. A bucket whose versioning was never
/// enabled can be "suspended" too (it then writes `null` versions, as it
/// did, and reports Suspended).
pub(super) async fn put_bucket_versioning(
    store: &ObjectStore,
    req: S3Request<PutBucketVersioningInput>,
) -> S3Result<S3Response<PutBucketVersioningOutput>> {
    let input = req.input;
    let config = input.versioning_configuration;
    if config
        .mfa_delete
        .as_ref()
        .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
    {
        return Err(s3_error!(NotImplemented, "MFA delete is not supported"));
    }
    let state = match config.status.as_ref().map(|s| s.as_str()) {
        Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
        Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
        _ => {
            return Err(s3_error!(
                MalformedXML,
                "the versioning Status must be Enabled or Suspended"
            ))
        }
    };
    store
        .set_bucket(
            &input.bucket,
            Setting::Versioning,
            state.status().map(str::to_string),
        )
        .await?;
    tracing::info!(bucket = input.bucket.as_str(), status = ?state.status(), "bucket versioning set");
    Ok(S3Response::new(PutBucketVersioningOutput::default()))
}
