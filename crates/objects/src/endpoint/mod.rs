//! The S3 endpoint: s3s's service, and in front of it what s3s 0.14.1 does
//! not do, or does in a way that would break a guarantee of the store.
//!
//! - CORS: a preflight (`OPTIONS`) is answered from the bucket's rules
//!   ([`cors`]); an answer to a browser (a request with `Origin`) carries
//!   the matching rule's headers, errors included.
//! - Browser uploads (an HTML form posted to a bucket): s3s would read the
//!   whole file into memory; [`post`] streams it into the store.
//! - A body sent chunked without `Content-Length`, which s3s refuses
//!   (MissingContentLength) because it must know the length to check the
//!   body's hash: it is spooled to an unlinked temp file first, then handed
//!   on with its length, never held in memory.
//! - Presigned URLs whose `X-Amz-Expires` is outside S3's 1 to 604800
//!   seconds, which s3s accepts.
//! - A request id on every answer: `x-amz-request-id`, and the error
//!   document's `RequestId`, so that a client can match the two.
//! - GetObjectAttributes' ETag, which S3 sends unquoted there (and only
//!   there); s3s quotes every ETag it writes.

mod cors;
mod form;
mod post;

use crate::access::{Domain, Keys};
use crate::store::ObjectStore;
use bytes::Bytes;
use futures_util::Stream;
use s3s::service::S3Service;
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{s3_error, S3Error};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// S3's largest single upload (PutObject, a form's file).
const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// S3's longest validity of a presigned URL, in seconds (seven days).
const MAX_PRESIGNED_EXPIRY: i64 = 7 * 24 * 3600;

/// roost's S3 endpoint: an HTTP request in, its answer out. Cheap to clone.
#[derive(Clone)]
pub struct S3Endpoint {
    inner: Arc<Inner>,
}

struct Inner {
    service: S3Service,
    store: ObjectStore,
    keys: Keys,
    domain: Option<Domain>,
}

/// The bucket and key a request names, path style or virtual-host style.
struct Target {
    bucket: Option<String>,
    key: Option<String>,
}

impl S3Endpoint {
    pub(crate) fn new(
        service: S3Service,
        store: ObjectStore,
        keys: Keys,
        domain: Option<Domain>,
    ) -> S3Endpoint {
        S3Endpoint {
            inner: Arc::new(Inner {
                service,
                store,
                keys,
                domain,
            }),
        }
    }

    /// The answer to `req`. An `Err` is a failure of the connection, not
    /// an S3 error (those are answers).
    pub async fn call(
        &self,
        req: http::Request<s3s::Body>,
    ) -> Result<http::Response<s3s::Body>, s3s::HttpError> {
        let request_id = hex::encode_upper(rand::random::<[u8; 8]>());
        let target = self.inner.target(&req);
        let origin = req
            .headers()
            .get(http::header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .map(str::to_string);
        let cors_method = cors::actual_method(req.headers(), req.method().as_str()).to_string();
        let preflight = req.method() == http::Method::OPTIONS;
        let attributes = is_get_object_attributes(&req, &target);
        let mut response = self.inner.route(req, &target).await?;
        if attributes && response.status().is_success() {
            rewrite_body(&mut response, unquote_etag);
        }
        if let (Some(origin), Some(bucket), false) = (origin, &target.bucket, preflight) {
            cors::decorate(
                &self.inner.store,
                bucket,
                &origin,
                &cors_method,
                response.headers_mut(),
            )
            .await;
        }
        with_request_id(&mut response, &request_id);
        Ok(response)
    }
}

impl Inner {
    fn target(&self, req: &http::Request<s3s::Body>) -> Target {
        let raw = req.uri().path();
        let path = urlencoding::decode(raw).map_or_else(|_| raw.to_string(), |p| p.into_owned());
        let path = path.strip_prefix('/').unwrap_or(&path);
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let host_bucket = self.domain.as_ref().and_then(|domain| {
            let host = req.headers().get(http::header::HOST)?.to_str().ok()?;
            domain.bucket_of(host).map(str::to_string)
        });
        match host_bucket {
            Some(bucket) => Target {
                bucket: Some(bucket),
                key: non_empty(path),
            },
            None => {
                let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
                Target {
                    bucket: non_empty(bucket),
                    key: non_empty(key),
                }
            }
        }
    }

    async fn route(
        &self,
        req: http::Request<s3s::Body>,
        target: &Target,
    ) -> Result<http::Response<s3s::Body>, s3s::HttpError> {
        if req.method() == http::Method::OPTIONS {
            let answer =
                cors::preflight(&self.store, target.bucket.as_deref(), req.headers()).await;
            return Ok(match answer {
                Ok(headers) => {
                    let mut response = http::Response::new(s3s::Body::empty());
                    *response.headers_mut() = headers;
                    response
                }
                Err(err) => error_response(err),
            });
        }
        if let Err(err) = check_presigned_expiry(req.uri()) {
            return Ok(error_response(err));
        }
        if req.method() == http::Method::POST && target.key.is_none() {
            if let (Some(bucket), Some(boundary)) =
                (&target.bucket, post::form_boundary(req.headers()))
            {
                let answer = post::post_object(self, req, bucket, &boundary).await;
                return Ok(answer.unwrap_or_else(error_response));
            }
        }
        let mut req = req;
        with_v2_bucket_slash(&mut req, target);
        let req = if has_unsized_body(req.headers()) {
            match self.spool(req).await {
                Ok(req) => req,
                Err(err) => return Ok(error_response(err)),
            }
        } else {
            req
        };
        self.service.call(req).await
    }

    /// `req` with its body read into an unlinked temp file and given back
    /// with its length.
    async fn spool(
        &self,
        req: http::Request<s3s::Body>,
    ) -> Result<http::Request<s3s::Body>, S3Error> {
        let (mut parts, body) = req.into_parts();
        let (file, len) = self.store.spool(body, MAX_OBJECT_SIZE).await?;
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
        parts.headers.remove(http::header::TRANSFER_ENCODING);
        let spooled = Spooled {
            content: tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file)),
            remaining: len,
        };
        let body = s3s::Body::from(Box::pin(spooled) as s3s::stream::DynByteStream);
        Ok(http::Request::from_parts(parts, body))
    }
}

/// SigV2 signs a bucket's own resource as `/bucket/`: the SDKs add the
/// slash to a path-style `/bucket` when they sign, while s3s signs the path
/// as sent. A V2-signed request to a bucket itself gets the slash before
/// s3s checks it (s3s routes `/bucket/` as `/bucket`).
fn with_v2_bucket_slash(req: &mut http::Request<s3s::Body>, target: &Target) {
    let v2 = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|auth| auth.starts_with("AWS "));
    let path = req.uri().path();
    let bare_bucket = target.key.is_none() && path.len() > 1 && !path[1..].contains('/');
    if !v2 || target.bucket.is_none() || !bare_bucket {
        return;
    }
    let with_slash = match req.uri().query() {
        Some(query) => format!("{path}/?{query}"),
        None => format!("{path}/"),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = with_slash.parse().ok();
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// Whether a request's body comes chunked, without `Content-Length`
/// (and not as aws-chunked, whose decoded length s3s is told).
fn has_unsized_body(headers: &http::HeaderMap) -> bool {
    let chunked = headers
        .get(http::header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let aws_chunked = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"));
    chunked && !aws_chunked && !headers.contains_key(http::header::CONTENT_LENGTH)
}

/// A spooled body, read back from its file.
struct Spooled {
    content: tokio_util::io::ReaderStream<tokio::fs::File>,
    remaining: u64,
}

impl Stream for Spooled {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.content).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(Box::new(err)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl ByteStream for Spooled {
    fn remaining_length(&self) -> RemainingLength {
        RemainingLength::new_exact(usize::try_from(self.remaining).unwrap_or(usize::MAX))
    }
}

/// Refuses a presigned URL valid for less than a second or more than S3's
/// seven days.
fn check_presigned_expiry(uri: &http::Uri) -> Result<(), S3Error> {
    let Some(query) = uri.query() else {
        return Ok(());
    };
    let expires = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("X-Amz-Expires="));
    match expires.map(str::parse::<i64>) {
        None => Ok(()),
        Some(Ok(secs)) if (1..=MAX_PRESIGNED_EXPIRY).contains(&secs) => Ok(()),
        Some(_) => Err(s3_error!(
            AccessDenied,
            "X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGNED_EXPIRY}"
        )),
    }
}

/// The answer that carries `err`.
fn error_response(err: S3Error) -> http::Response<s3s::Body> {
    err.to_http_response().unwrap_or_else(|err| {
        tracing::error!(error = %err, "cannot write an S3 error answer");
        let mut response = http::Response::new(s3s::Body::empty());
        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        response
    })
}

fn header_value(value: &str) -> http::HeaderValue {
    http::HeaderValue::from_str(value).unwrap_or_else(|_| http::HeaderValue::from_static(""))
}

/// Names the answer with `id`: its `x-amz-request-id`, and the
/// `RequestId` of its error document, if it has one.
fn with_request_id(response: &mut http::Response<s3s::Body>, id: &str) {
    response
        .headers_mut()
        .insert("x-amz-request-id", header_value(id));
    if !(response.status().is_client_error() || response.status().is_server_error()) {
        return;
    }
    rewrite_body(response, |body| {
        let at = memchr::memmem::rfind(body, b"</Error>")?;
        if memchr::memmem::find(body, b"<RequestId>").is_some() {
            return None;
        }
        let mut named = Vec::with_capacity(body.len() + id.len() + 24);
        named.extend_from_slice(&body[..at]);
        named.extend_from_slice(format!("<RequestId>{id}</RequestId>").as_bytes());
        named.extend_from_slice(&body[at..]);
        Some(named)
    });
}

/// Whether `req` is a GetObjectAttributes (`GET /bucket/key?attributes`).
fn is_get_object_attributes(req: &http::Request<s3s::Body>, target: &Target) -> bool {
    req.method() == http::Method::GET
        && target.key.is_some()
        && req.uri().query().is_some_and(|query| {
            query
                .split('&')
                .any(|pair| pair.split('=').next() == Some("attributes"))
        })
}

/// The document with its (first) `<ETag>"…"</ETag>` unquoted.
fn unquote_etag(body: &[u8]) -> Option<Vec<u8>> {
    const OPEN: &[u8] = b"<ETag>\"";
    const CLOSE: &[u8] = b"\"</ETag>";
    let start = memchr::memmem::find(body, OPEN)?;
    let value = start + OPEN.len();
    let end = value + memchr::memmem::find(&body[value..], CLOSE)?;
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(&body[..start + OPEN.len() - 1]);
    out.extend_from_slice(&body[value..end]);
    out.extend_from_slice(&body[end + 1..]);
    Some(out)
}

/// Replaces a buffered answer's body with what `rewrite` makes of it (when
/// it makes something), keeping `Content-Length` true.
fn rewrite_body(
    response: &mut http::Response<s3s::Body>,
    rewrite: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
) {
    let Some(body) = response.body().bytes() else {
        return;
    };
    let Some(new) = rewrite(&body) else {
        return;
    };
    let len = new.len();
    *response.body_mut() = s3s::Body::from(new);
    if response
        .headers()
        .contains_key(http::header::CONTENT_LENGTH)
    {
        response
            .headers_mut()
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presigned_urls_live_one_second_to_seven_days() {
        for (query, ok) in [
            ("", true),
            ("X-Amz-Expires=1", true),
            ("a=b&X-Amz-Expires=604800", true),
            ("X-Amz-Expires=0", false),
            ("X-Amz-Expires=604801", false),
            ("X-Amz-Expires=-7", false),
            ("X-Amz-Expires=soon", false),
        ] {
            let uri: http::Uri = format!("/b/k?{query}").parse().unwrap();
            assert_eq!(check_presigned_expiry(&uri).is_ok(), ok, "{query}");
        }
    }

    #[test]
    fn only_the_etag_is_unquoted() {
        let body = b"<R><ETag>\"abc-2\"</ETag><Checksum>\"x\"</Checksum></R>";
        assert_eq!(
            unquote_etag(body).unwrap(),
            b"<R><ETag>abc-2</ETag><Checksum>\"x\"</Checksum></R>"
        );
        assert_eq!(unquote_etag(b"<R><ObjectSize>3</ObjectSize></R>"), None);
    }

    #[test]
    fn an_error_document_gets_the_request_id() {
        let mut response = http::Response::new(s3s::Body::from(
            "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>".to_string(),
        ));
        *response.status_mut() = http::StatusCode::NOT_FOUND;
        with_request_id(&mut response, "ABC");
        assert_eq!(response.headers()["x-amz-request-id"], "ABC");
        let body = response.body().bytes().unwrap();
        assert_eq!(
            &body[..],
            b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><RequestId>ABC</RequestId></Error>"
        );
    }
}
