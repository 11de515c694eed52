//! Canned ACLs of buckets and objects: `x-amz-acl` on create and upload,
//! Get/Put Bucket/Object Acl. roost keeps only the canned ACLs (see
//! [`CannedAcl`]); a grant list that is not one of them answers
//! NotImplemented, so nothing is silently granted or dropped.

use super::bucket_config;
use crate::access::owner_id;
use crate::index::buckets::Setting;
use crate::record::CannedAcl;
use crate::store::ObjectStore;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";

/// The canned ACL an `x-amz-acl` value names (absent: private).
pub(super) fn canned(value: Option<&str>) -> S3Result<CannedAcl> {
    match value {
        None => Ok(CannedAcl::Private),
        Some(name) => CannedAcl::parse(name).ok_or_else(|| {
            s3_error!(
                NotImplemented,
                "canned ACL '{name}' is not supported (private, public-read, public-read-write, authenticated-read and bucket-owner-full-control are)"
            )
        }),
    }
}

/// Refuses the `x-amz-grant-*` headers, which grant to individual accounts.
fn no_grant_headers(headers: &[Option<&String>]) -> S3Result<()> {
    if headers.iter().any(Option::is_some) {
        return Err(s3_error!(
            NotImplemented,
            "x-amz-grant-* headers are not supported; use a canned ACL (x-amz-acl)"
        ));
    }
    Ok(())
}

fn owner(id: &str) -> Owner {
    Owner {
        display_name: Some(id.to_string()),
        id: Some(id.to_string()),
    }
}

fn group_grant(uri: &str, permission: &'static str) -> Grant {
    Grant {
        grantee: Some(Grantee {
            display_name: None,
            email_address: None,
            id: None,
            type_: Type::from_static(Type::GROUP),
            uri: Some(uri.to_string()),
        }),
        permission: Some(Permission::from_static(permission)),
    }
}

/// The grants a canned ACL stands for: the owner's full control, and what
/// everyone (or every signed request) may do.
fn grants(acl: CannedAcl, owner_id: &str) -> Grants {
    let mut grants = Vec::new();
    match acl {
        CannedAcl::Private => {}
        CannedAcl::PublicRead => grants.push(group_grant(ALL_USERS, Permission::READ)),
        CannedAcl::PublicReadWrite => {
            grants.push(group_grant(ALL_USERS, Permission::READ));
            grants.push(group_grant(ALL_USERS, Permission::WRITE));
        }
        CannedAcl::AuthenticatedRead => {
            grants.push(group_grant(AUTHENTICATED_USERS, Permission::READ))
        }
    }
    grants.push(Grant {
        grantee: Some(Grantee {
            display_name: Some(owner_id.to_string()),
            email_address: None,
            id: Some(owner_id.to_string()),
            type_: Type::from_static(Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    });
    grants
}

/// (group URI, canonical id, permission) of each grant, to compare grant
/// lists in any order.
fn summary(grants: &[Grant]) -> Vec<(Option<&str>, Option<&str>, &str)> {
    grants
        .iter()
        .map(|g| {
            let grantee = g.grantee.as_ref();
            (
                grantee.and_then(|g| g.uri.as_deref()),
                grantee.and_then(|g| g.id.as_deref()),
                g.permission.as_ref().map_or("", |p| p.as_str()),
            )
        })
        .collect()
}

/// The canned ACL an AccessControlPolicy document amounts to, if any: it
/// must grant the owner full control and nothing but a canned ACL's group
/// grants.
fn from_policy(policy: &AccessControlPolicy, owner_id: &str) -> S3Result<CannedAcl> {
    let given = summary(policy.grants.as_deref().unwrap_or_default());
    for acl in [
        CannedAcl::Private,
        CannedAcl::PublicRead,
        CannedAcl::PublicReadWrite,
        CannedAcl::AuthenticatedRead,
    ] {
        let canned = grants(acl, owner_id);
        let want = summary(&canned);
        if want.len() == given.len() && want.iter().all(|w| given.contains(w)) {
            return Ok(acl);
        }
    }
    Err(s3_error!(
        NotImplemented,
        "only ACLs that amount to a canned ACL (private, public-read, public-read-write, authenticated-read) are supported"
    ))
}

/// The canned ACL a Put*Acl request sets: its `x-amz-acl`, or its policy
/// document.
fn requested(
    acl: Option<&str>,
    policy: Option<&AccessControlPolicy>,
    grant_headers: &[Option<&String>],
    owner_id: &str,
) -> S3Result<CannedAcl> {
    no_grant_headers(grant_headers)?;
    match (acl, policy) {
        (Some(_), _) | (None, None) => canned(acl),
        (None, Some(policy)) => from_policy(policy, owner_id),
    }
}

/// The canned ACL a PutBucketAcl or PutObjectAcl input asks for. The two
/// s3s types name these fields alike but share no trait.
macro_rules! requested_acl {
    ($input:expr, $owner:expr) => {
        requested(
            $input.acl.as_ref().map(|a| a.as_str()),
            $input.access_control_policy.as_ref(),
            &[
                $input.grant_full_control.as_ref(),
                $input.grant_read.as_ref(),
                $input.grant_read_acp.as_ref(),
                $input.grant_write.as_ref(),
                $input.grant_write_acp.as_ref(),
            ],
            $owner,
        )
    };
}

pub(super) async fn get_bucket_acl(
    store: &ObjectStore,
    req: S3Request<GetBucketAclInput>,
) -> S3Result<S3Response<GetBucketAclOutput>> {
    let config = bucket_config(store, &req.input.bucket).await?;
    let id = owner_id(config.owner.as_deref());
    Ok(S3Response::new(GetBucketAclOutput {
        grants: Some(grants(config.acl, id)),
        owner: Some(owner(id)),
    }))
}

pub(super) async fn put_bucket_acl(
    store: &ObjectStore,
    req: S3Request<PutBucketAclInput>,
) -> S3Result<S3Response<PutBucketAclOutput>> {
    let input = req.input;
    let config = bucket_config(store, &input.bucket).await?;
    let acl = requested_acl!(input, owner_id(config.owner.as_deref()))?;
    store
        .set_bucket(
            &input.bucket,
            Setting::Acl,
            (!acl.is_private()).then(|| acl.as_str().to_string()),
        )
        .await?;
    Ok(S3Response::new(PutBucketAclOutput::default()))
}

pub(super) async fn get_object_acl(
    store: &ObjectStore,
    req: S3Request<GetObjectAclInput>,
) -> S3Result<S3Response<GetObjectAclOutput>> {
    let input = req.input;
    let config = bucket_config(store, &input.bucket).await?;
    let record = store
        .object_version(&input.bucket, &input.key, input.version_id.as_deref())
        .await?;
    let id = owner_id(config.owner.as_deref());
    Ok(S3Response::new(GetObjectAclOutput {
        grants: Some(grants(record.meta.acl, id)),
        owner: Some(owner(id)),
        ..Default::default()
    }))
}

pub(super) async fn put_object_acl(
    store: &ObjectStore,
    req: S3Request<PutObjectAclInput>,
) -> S3Result<S3Response<PutObjectAclOutput>> {
    let input = req.input;
    let config = bucket_config(store, &input.bucket).await?;
    let acl = requested_acl!(input, owner_id(config.owner.as_deref()))?;
    store
        .update_object_meta(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            move |meta| meta.acl = acl,
        )
        .await?;
    Ok(S3Response::new(PutObjectAclOutput::default()))
}

/// The ACL of a new object: `x-amz-acl`, refusing individual grants.
pub(super) fn object_acl(
    acl: Option<&ObjectCannedACL>,
    grants: &[Option<&String>],
) -> S3Result<CannedAcl> {
    no_grant_headers(grants)?;
    canned(acl.map(|a| a.as_str()))
}

/// [`object_acl`] of a PutObject, CopyObject or CreateMultipartUpload
/// input. The three s3s types name these fields alike but share no trait.
macro_rules! new_object_acl {
    ($input:expr) => {
        $crate::s3::acl::object_acl(
            $input.acl.as_ref(),
            &[
                $input.grant_full_control.as_ref(),
                $input.grant_read.as_ref(),
                $input.grant_read_acp.as_ref(),
                $input.grant_write_acp.as_ref(),
            ],
        )
    };
}
pub(super) use new_object_acl;
