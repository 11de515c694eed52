//! Bucket operations: list, create, head, delete, location, versioning.

use super::timestamp;
use crate::access::{principal, Principal};
use crate::error::Error;
use crate::store::ObjectStore;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

pub(super) async fn list_buckets(
    store: &ObjectStore,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let who = principal(&req.extensions);
    let buckets = store
        .list_buckets()
        .await?
        .into_iter()
        .filter(|b| who.may_use(b.owner.as_deref()))
        .map(|b| Bucket {
            name: Some(b.name),
            creation_date: Some(timestamp(b.created_ms)),
            bucket_region: None,
        })
        .collect();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(Owner {
            display_name: Some("roost".into()),
            id: Some("roost".into()),
        }),
        ..Default::default()
    }))
}

pub(super) async fn create_bucket(
    store: &ObjectStore,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let owner = match principal(&req.extensions) {
        Principal::Admin => None,
        Principal::App(app) => Some(app),
    };
    let name = req.input.bucket;
    match ObjectStore::create_bucket(store, &name, owner.as_deref()).await {
        Ok(_) => {}
        Err(Error::BucketExists(_)) => {
            let existing = store.bucket(&name).await?;
            return Err(match existing {
                Some(b) if b.owner == owner => s3_error!(BucketAlreadyOwnedByYou),
                _ => s3_error!(BucketAlreadyExists),
            });
        }
        Err(err) => return Err(err.into()),
    }
    Ok(S3Response::new(CreateBucketOutput {
        location: Some(format!("/{name}")),
    }))
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

/// Buckets are never versioned: the answer of a bucket whose versioning
/// was never enabled (no `Status`). PutBucketVersioning stays
/// NotImplemented.
pub(super) async fn get_bucket_versioning(
    store: &ObjectStore,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    store.require_bucket(&req.input.bucket).await?;
    Ok(S3Response::new(GetBucketVersioningOutput::default()))
}
