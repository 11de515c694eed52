//! Browser uploads: `POST /<bucket>` with an HTML form
//! (`multipart/form-data`), as S3 takes them.
//!
//! Why here and not in s3s: s3s 0.14.1 reads the whole file of a form into
//! memory before it calls the operation (up to 5 GB), which would break the
//! store's rule that no object is held in memory. This module reads the
//! form's fields, checks its signature (SigV4 or SigV2, over the policy
//! document) and its policy's conditions, then streams the file into
//! PutObject, whose checks and durability it shares.
//!
//! A form without a policy is anonymous: it may write only where the
//! bucket's ACL lets everyone write (`public-read-write`).

use super::form::{self, Fields, FilePart, FormError};
use super::{Inner, MAX_OBJECT_SIZE};
use crate::access::{Caller, Principal};
use crate::store::BodySizeError;
use bytes::Bytes;
use futures_util::Stream;
use hmac::{Hmac, KeyInit, Mac};
use s3s::dto::{self, PutObjectInput, StreamingBlob};
use s3s::post_policy::{PostPolicy, PostPolicyCondition};
use s3s::stream::ByteStream;
use s3s::{s3_error, S3Error, S3Request, S3Result, S3};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Fields a policy need not name: the signature's own, and those S3 lets
/// through unchecked.
fn needs_no_condition(name: &str) -> bool {
    matches!(
        name,
        "awsaccesskeyid" | "signature" | "policy" | "x-amz-signature" | "file"
    ) || name.starts_with("x-ignore-")
        || name.starts_with("x-amz-checksum-")
}

/// The form boundary of a browser upload's `Content-Type`
/// (`multipart/form-data; boundary=...`); `None` for any other request.
pub(super) fn form_boundary(headers: &http::HeaderMap) -> Option<String> {
    let content_type = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    let mut params = content_type.split(';');
    if !params
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return None;
    }
    params.find_map(|param| {
        let (name, value) = param.trim().split_once('=')?;
        name.trim().eq_ignore_ascii_case("boundary").then(|| {
            let value = value.trim();
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
                .to_string()
        })
    })
}

fn malformed(err: &FormError) -> S3Error {
    s3_error!(MalformedPOSTRequest, "{err}")
}

/// Who signed the form, checked against its key's secret.
async fn principal(inner: &Inner, fields: &Fields) -> S3Result<Principal> {
    let policy = fields.get("policy");
    let v4 = fields.get("x-amz-signature");
    let v2 = fields.get("signature");
    let Some(policy) = policy else {
        if v4.is_some() || v2.is_some() {
            return Err(s3_error!(
                InvalidArgument,
                "a signed form carries its policy in a 'policy' field"
            ));
        }
        return Ok(Principal::Anonymous);
    };
    let (access_key, signing_key, signature, hex_signature) = if let Some(signature) = v4 {
        let credential = fields.get("x-amz-credential").ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "a SigV4 form needs an x-amz-credential field"
            )
        })?;
        if fields.get("x-amz-algorithm") != Some("AWS4-HMAC-SHA256") {
            return Err(s3_error!(
                InvalidArgument,
                "x-amz-algorithm must be AWS4-HMAC-SHA256"
            ));
        }
        let parts: Vec<&str> = credential.split('/').collect();
        let [access_key, date, region, service, "aws4_request"] = parts[..] else {
            return Err(s3_error!(
                InvalidArgument,
                "x-amz-credential must be <key id>/<date>/<region>/<service>/aws4_request"
            ));
        };
        (
            access_key,
            SigningKey::V4 {
                date,
                region,
                service,
            },
            signature,
            true,
        )
    } else if let Some(signature) = v2 {
        let access_key = fields.get("awsaccesskeyid").ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "a SigV2 form needs an AWSAccessKeyId field"
            )
        })?;
        (access_key, SigningKey::V2, signature, false)
    } else {
        return Err(s3_error!(
            InvalidArgument,
            "a form with a policy must be signed: x-amz-signature (SigV4) or signature (SigV2)"
        ));
    };
    let Some((secret, principal)) = inner.keys.resolve(access_key)? else {
        return Err(s3_error!(InvalidAccessKeyId));
    };
    let given = if hex_signature {
        hex::decode(signature).ok()
    } else {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(signature)
            .ok()
    };
    let valid = given.is_some_and(|given| signing_key.verify(&secret, policy, &given));
    if !valid {
        return Err(s3_error!(
            SignatureDoesNotMatch,
            "the form's signature does not match its policy signed with the key's secret"
        ));
    }
    Ok(principal)
}

enum SigningKey<'a> {
    V2,
    V4 {
        date: &'a str,
        region: &'a str,
        service: &'a str,
    },
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// SigV4's signing key: the secret, HMAC'd with the credential's scope.
fn v4_signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    [date, region, service, "aws4_request"]
        .iter()
        .fold(format!("AWS4{secret}").into_bytes(), |key, part| {
            hmac_sha256(&key, part)
        })
}

impl SigningKey<'_> {
    /// Whether `signature` is the policy's signature under `secret`
    /// (compared in constant time).
    fn verify(&self, secret: &str, policy: &str, signature: &[u8]) -> bool {
        match self {
            SigningKey::V2 => {
                let mut mac =
                    Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("any key");
                mac.update(policy.as_bytes());
                mac.verify_slice(signature).is_ok()
            }
            SigningKey::V4 {
                date,
                region,
                service,
            } => {
                let key = v4_signing_key(secret, date, region, service);
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key");
                mac.update(policy.as_bytes());
                mac.verify_slice(signature).is_ok()
            }
        }
    }
}

fn policy_failed(what: &str) -> S3Error {
    s3_error!(
        AccessDenied,
        "Invalid according to Policy: Policy Condition failed: {what}"
    )
}

/// S3 takes a policy's `expiration` only in ISO 8601 UTC form
/// (`2030-01-01T00:00:00Z`, fractions of a second allowed); s3s's parser
/// also takes other date forms, which S3 answers with a 400.
fn check_expiration_format(policy: &str) -> Result<(), String> {
    use base64::Engine as _;
    let doc = base64::engine::general_purpose::STANDARD
        .decode(policy)
        .map_err(|e| e.to_string())?;
    let doc: serde_json::Value = serde_json::from_slice(&doc).map_err(|e| e.to_string())?;
    let Some(expiration) = doc.get("expiration").and_then(|v| v.as_str()) else {
        return Ok(());
    };
    let utc = expiration.ends_with('Z')
        && time::OffsetDateTime::parse(expiration, &time::format_description::well_known::Rfc3339)
            .is_ok();
    if utc {
        Ok(())
    } else {
        Err(format!(
            "expiration {expiration:?} is not an ISO 8601 UTC time"
        ))
    }
}

/// The form's policy document, checked against its fields (with the key
/// already resolved, as the policy sees it) and the bucket posted to.
/// Returns the allowed file sizes.
fn check_policy(policy: &str, fields: &Fields, bucket: &str, key: &str) -> S3Result<(u64, u64)> {
    let invalid = |e: &dyn std::fmt::Display| {
        s3_error!(InvalidPolicyDocument, "the form's policy is not valid: {e}")
    };
    check_expiration_format(policy).map_err(|e| invalid(&e))?;
    let policy = PostPolicy::from_base64(policy).map_err(|e| invalid(&e))?;
    let expiration: time::OffsetDateTime = policy.expiration.clone().into();
    if time::OffsetDateTime::now_utc() >= expiration {
        return Err(s3_error!(
            AccessDenied,
            "Invalid according to Policy: Policy expired."
        ));
    }
    let value = |field: &str| -> String {
        match field {
            "bucket" => bucket.to_string(),
            "key" => key.to_string(),
            _ => fields.get(field).unwrap_or_default().to_string(),
        }
    };
    let mut sizes = (0, MAX_OBJECT_SIZE);
    let mut named = Vec::new();
    for condition in &policy.conditions {
        match condition {
            PostPolicyCondition::Eq { field, value: want } => {
                if value(field) != *want {
                    return Err(policy_failed(&format!(
                        "[\"eq\", \"${field}\", \"{want}\"]"
                    )));
                }
                named.push(field.as_str());
            }
            PostPolicyCondition::StartsWith { field, prefix } => {
                if !value(field).starts_with(prefix.as_str()) {
                    return Err(policy_failed(&format!(
                        "[\"starts-with\", \"${field}\", \"{prefix}\"]"
                    )));
                }
                named.push(field.as_str());
            }
            PostPolicyCondition::ContentLengthRange { min, max } => sizes = (*min, *max),
        }
    }
    if !named.contains(&"bucket") {
        return Err(policy_failed("the policy must name the bucket"));
    }
    if let Some((extra, _)) = fields
        .0
        .iter()
        .find(|(name, _)| !needs_no_condition(name) && !named.contains(&name.as_str()))
    {
        return Err(s3_error!(
            AccessDenied,
            "Invalid according to Policy: Extra input fields: {extra}"
        ));
    }
    Ok(sizes)
}

/// The form's file, failing once it is outside the policy's sizes.
struct Bounded {
    content: form::FileStream,
    read: u64,
    min: u64,
    max: u64,
    done: bool,
}

impl Stream for Bounded {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.content).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.read += chunk.len() as u64;
                if this.read > this.max {
                    this.done = true;
                    return Poll::Ready(Some(Err(Box::new(BodySizeError::TooLarge {
                        max: this.max,
                    }))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.done = true;
                Poll::Ready(Some(Err(Box::new(err))))
            }
            Poll::Ready(None) => {
                this.done = true;
                if this.read < this.min {
                    return Poll::Ready(Some(Err(Box::new(BodySizeError::TooSmall {
                        min: this.min,
                    }))));
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl ByteStream for Bounded {}

/// A `tagging` field (a Tagging document) as `x-amz-tagging` carries it.
fn tagging_header(xml: &str) -> S3Result<String> {
    use s3s::xml::Deserialize as _;
    let mut de = s3s::xml::Deserializer::new(xml.as_bytes());
    let tagging = dto::Tagging::deserialize(&mut de)
        .and_then(|t| de.expect_eof().map(|()| t))
        .map_err(|e| {
            s3_error!(
                MalformedXML,
                "the tagging field is not a Tagging document: {e}"
            )
        })?;
    Ok(tagging
        .tag_set
        .iter()
        .map(|t| {
            format!(
                "{}={}",
                urlencoding::encode(t.key.as_deref().unwrap_or_default()),
                urlencoding::encode(t.value.as_deref().unwrap_or_default())
            )
        })
        .collect::<Vec<_>>()
        .join("&"))
}

/// The PutObject a form asks for.
fn put_input(
    fields: &Fields,
    bucket: &str,
    key: String,
    body: Bounded,
) -> S3Result<PutObjectInput> {
    let text = |name: &str| fields.get(name).map(str::to_string);
    let expires = match fields.get("expires") {
        Some(date) => Some(
            dto::Timestamp::parse(dto::TimestampFormat::HttpDate, date)
                .map_err(|_| s3_error!(InvalidArgument, "expires is not an HTTP date"))?,
        ),
        None => None,
    };
    let metadata: dto::Metadata = fields
        .0
        .iter()
        .filter_map(|(name, value)| {
            name.strip_prefix("x-amz-meta-")
                .map(|n| (n.to_string(), value.clone()))
        })
        .collect();
    Ok(PutObjectInput {
        bucket: bucket.to_string(),
        key,
        body: Some(StreamingBlob::new(body)),
        acl: text("acl").map(dto::ObjectCannedACL::from),
        content_type: text("content-type"),
        cache_control: text("cache-control"),
        content_disposition: text("content-disposition"),
        content_encoding: text("content-encoding"),
        content_md5: text("content-md5"),
        expires,
        metadata: (!metadata.is_empty()).then_some(metadata),
        tagging: fields.get("tagging").map(tagging_header).transpose()?,
        checksum_algorithm: text("x-amz-checksum-algorithm").map(dto::ChecksumAlgorithm::from),
        checksum_crc32: text("x-amz-checksum-crc32"),
        checksum_crc32c: text("x-amz-checksum-crc32c"),
        checksum_sha1: text("x-amz-checksum-sha1"),
        checksum_sha256: text("x-amz-checksum-sha256"),
        checksum_crc64nvme: text("x-amz-checksum-crc64nvme"),
        ..Default::default()
    })
}

/// Where the answer sends the browser: `success_action_redirect` with the
/// object named in its query, or one of the statuses S3 allows.
fn answer(
    fields: &Fields,
    location: &str,
    bucket: &str,
    key: &str,
    etag: &str,
) -> S3Result<http::Response<s3s::Body>> {
    let redirect = fields
        .get("success_action_redirect")
        .or_else(|| fields.get("redirect"))
        .filter(|r| !r.is_empty());
    let mut response = http::Response::new(s3s::Body::empty());
    if let Some(url) = redirect {
        let separator = if url.contains('?') { '&' } else { '?' };
        let target = format!(
            "{url}{separator}bucket={}&key={}&etag={}",
            urlencoding::encode(bucket),
            urlencoding::encode(key),
            urlencoding::encode(etag)
        );
        *response.status_mut() = http::StatusCode::SEE_OTHER;
        response
            .headers_mut()
            .insert(http::header::LOCATION, super::header_value(&target));
        return Ok(response);
    }
    match fields.get("success_action_status") {
        Some("200") => *response.status_mut() = http::StatusCode::OK,
        Some("201") => {
            *response.status_mut() = http::StatusCode::CREATED;
            let mut xml = Vec::new();
            let mut ser = s3s::xml::Serializer::new(&mut xml);
            ser.decl()
                .and_then(|()| {
                    ser.element("PostResponse", |s| {
                        s.content("Location", location)?;
                        s.content("Bucket", bucket)?;
                        s.content("Key", key)?;
                        s.content("ETag", etag)
                    })
                })
                .map_err(|e| s3_error!(InternalError, "cannot write the answer: {e}"))?;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/xml"),
            );
            *response.body_mut() = s3s::Body::from(xml);
        }
        _ => *response.status_mut() = http::StatusCode::NO_CONTENT,
    }
    response
        .headers_mut()
        .insert(http::header::LOCATION, super::header_value(location));
    Ok(response)
}

/// Stores the file of a form posted to `bucket`.
pub(super) async fn post_object(
    inner: &Inner,
    req: http::Request<s3s::Body>,
    bucket: &str,
    boundary: &str,
) -> S3Result<http::Response<s3s::Body>> {
    let (parts, body) = req.into_parts();
    let (fields, file) = form::read(body, boundary)
        .await
        .map_err(|e| malformed(&e))?;
    let Some(FilePart { filename, content }) = file else {
        return Err(s3_error!(
            IncorrectNumberOfFilesInPostRequest,
            "POST requires exactly one file upload per request"
        ));
    };
    let principal = principal(inner, &fields).await?;
    let Some(key) = fields.get("key") else {
        return Err(s3_error!(
            InvalidArgument,
            "Bucket POST must contain a field named 'key'"
        ));
    };
    let key = key.replace("${filename}", filename.as_deref().unwrap_or_default());
    let (min, max) = match fields.get("policy") {
        Some(policy) => check_policy(policy, &fields, bucket, &key)?,
        None => (0, MAX_OBJECT_SIZE),
    };
    let (owns_bucket, bucket_acl) = inner.keys.decide(&principal, bucket, "PostObject").await?;
    let body = Bounded {
        content,
        read: 0,
        min,
        max: max.min(MAX_OBJECT_SIZE),
        done: false,
    };
    let input = put_input(&fields, bucket, key.clone(), body)?;
    let mut extensions = http::Extensions::new();
    extensions.insert(Caller {
        principal,
        owns_bucket,
        bucket_acl,
    });
    let put = S3Request {
        input,
        method: http::Method::PUT,
        uri: parts.uri,
        headers: http::HeaderMap::new(),
        extensions,
        credentials: None,
        region: None,
        service: None,
        trailing_headers: None,
    };
    let output = inner.store.put_object(put).await?.output;
    let etag = output
        .e_tag
        .map(|e| format!("\"{}\"", e.value()))
        .unwrap_or_default();
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let location = format!(
        "http://{host}/{}/{}",
        urlencoding::encode(bucket),
        urlencoding::encode(&key)
    );
    let mut response = answer(&fields, &location, bucket, &key, &etag)?;
    let headers = response.headers_mut();
    headers.insert(http::header::ETAG, super::header_value(&etag));
    if let Some(version) = output.version_id {
        headers.insert("x-amz-version-id", super::header_value(&version));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn policy(conditions: &str) -> String {
        use base64::Engine as _;
        let doc =
            format!(r#"{{"expiration": "2999-01-01T00:00:00Z", "conditions": {conditions}}}"#);
        base64::engine::general_purpose::STANDARD.encode(doc)
    }

    #[test]
    fn a_policy_checks_every_field_and_the_bucket() {
        let conditions = r#"[{"bucket": "b"}, ["starts-with", "$key", "up/"], {"acl": "private"}, ["content-length-range", 1, 10]]"#;
        let form = fields(&[("acl", "private"), ("x-ignore-me", "1"), ("policy", "p")]);
        assert_eq!(
            check_policy(&policy(conditions), &form, "b", "up/a").unwrap(),
            (1, 10)
        );
        let refused = [
            (conditions, "other", "up/a", form.0.clone()),
            (conditions, "b", "down/a", form.0.clone()),
            (conditions, "b", "up/a", fields(&[("acl", "public-read")]).0),
            (
                conditions,
                "b",
                "up/a",
                fields(&[("acl", "private"), ("x-amz-meta-a", "1")]).0,
            ),
            (r#"[["starts-with", "$key", ""]]"#, "b", "up/a", Vec::new()),
        ];
        for (conditions, bucket, key, form) in refused {
            let err = check_policy(&policy(conditions), &Fields(form), bucket, key).unwrap_err();
            assert_eq!(
                err.code(),
                &s3s::S3ErrorCode::AccessDenied,
                "{conditions} {bucket} {key}"
            );
        }
    }

    #[test]
    fn signatures_are_those_of_sigv2_and_sigv4() {
        // HMAC-SHA1 of RFC 2202's second test case.
        let want = hex::decode("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79").unwrap();
        let data = "what do ya want for nothing?";
        assert!(SigningKey::V2.verify("Jefe", data, &want));
        assert!(!SigningKey::V2.verify("Jeff", data, &want));
        // The signing key of AWS's SigV4 key derivation example.
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        assert_eq!(
            hex::encode(v4_signing_key(secret, "20120215", "us-east-1", "iam")),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
        let v4 = SigningKey::V4 {
            date: "20120215",
            region: "us-east-1",
            service: "iam",
        };
        let signed = hmac_sha256(
            &v4_signing_key(secret, "20120215", "us-east-1", "iam"),
            "cG9saWN5",
        );
        assert!(v4.verify(secret, "cG9saWN5", &signed));
        assert!(!v4.verify(secret, "cG9saWN6", &signed));
    }
}
