//! Conditional requests: `If-Match`, `If-None-Match`, `If-Modified-Since`,
//! `If-Unmodified-Since`, and their `x-amz-copy-source-if-*` twins.

use super::unix_secs;
use crate::record::ObjectRecord;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Result};

pub(super) fn etag_matches(condition: &ETagCondition, etag: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

/// Conditional GET/HEAD (RFC 9110 §13.2.2 order, as S3 applies it).
pub(super) struct Conditions<'a> {
    pub(super) if_match: Option<&'a ETagCondition>,
    pub(super) if_none_match: Option<&'a ETagCondition>,
    pub(super) if_modified_since: Option<&'a Timestamp>,
    pub(super) if_unmodified_since: Option<&'a Timestamp>,
}

impl Conditions<'_> {
    pub(super) fn check(
        &self,
        record: &ObjectRecord,
        not_modified: fn(&ObjectRecord) -> S3Error,
    ) -> S3Result<()> {
        let modified = record.modified_ms / 1000;
        if let Some(cond) = self.if_match {
            if !etag_matches(cond, &record.etag) {
                return Err(s3_error!(PreconditionFailed));
            }
        } else if let Some(since) = self.if_unmodified_since {
            if modified > unix_secs(since) {
                return Err(s3_error!(PreconditionFailed));
            }
        }
        if let Some(cond) = self.if_none_match {
            if etag_matches(cond, &record.etag) {
                return Err(not_modified(record));
            }
        } else if let Some(since) = self.if_modified_since {
            if modified <= unix_secs(since) {
                return Err(not_modified(record));
            }
        }
        Ok(())
    }
}

/// The conditional headers of a GetObject or HeadObject input (same field
/// names, different types).
macro_rules! read_conditions {
    ($input:expr) => {
        Conditions {
            if_match: $input.if_match.as_ref(),
            if_none_match: $input.if_none_match.as_ref(),
            if_modified_since: $input.if_modified_since.as_ref(),
            if_unmodified_since: $input.if_unmodified_since.as_ref(),
        }
    };
}
pub(super) use read_conditions;

/// The `x-amz-copy-source-if-*` headers of a CopyObject or UploadPartCopy
/// input.
macro_rules! copy_source_conditions {
    ($input:expr) => {
        Conditions {
            if_match: $input.copy_source_if_match.as_ref(),
            if_none_match: $input.copy_source_if_none_match.as_ref(),
            if_modified_since: $input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: $input.copy_source_if_unmodified_since.as_ref(),
        }
    };
}
pub(super) use copy_source_conditions;

/// 304 Not Modified, with the ETag and Last-Modified a cache revalidates
/// against.
pub(super) fn not_modified(record: &ObjectRecord) -> S3Error {
    let mut err = s3_error!(NotModified);
    let mut headers = http::HeaderMap::new();
    if let Ok(etag) = http::HeaderValue::from_str(&format!("\"{}\"", record.etag)) {
        headers.insert(http::header::ETAG, etag);
    }
    if let Some(date) = super::http_date(&super::timestamp(record.modified_ms))
        .and_then(|d| http::HeaderValue::from_str(&d).ok())
    {
        headers.insert(http::header::LAST_MODIFIED, date);
    }
    err.set_headers(headers);
    err
}

/// 412 for copy sources, whose `If-None-Match`/`If-Modified-Since` fail
/// with PreconditionFailed rather than 304.
pub(super) fn precondition_failed(_: &ObjectRecord) -> S3Error {
    s3_error!(PreconditionFailed)
}

/// Conditional writes (PutObject, CompleteMultipartUpload): `If-Match`
/// needs a current object with a matching ETag (NoSuchKey when there is
/// none), `If-None-Match` refuses a matching one (`*`: any). Checked inside
/// the write's transaction, against the object the write would replace.
pub(super) struct WriteConditions {
    pub(super) if_match: Option<ETagCondition>,
    pub(super) if_none_match: Option<ETagCondition>,
}

impl WriteConditions {
    pub(super) fn check(&self, current: Option<&ObjectRecord>) -> S3Result<()> {
        match (current, &self.if_match) {
            (None, Some(_)) => return Err(s3_error!(NoSuchKey)),
            (Some(cur), Some(cond)) if !etag_matches(cond, &cur.etag) => {
                return Err(s3_error!(PreconditionFailed))
            }
            _ => {}
        }
        if let (Some(cur), Some(cond)) = (current, &self.if_none_match) {
            if etag_matches(cond, &cur.etag) {
                return Err(s3_error!(PreconditionFailed));
            }
        }
        Ok(())
    }
}
