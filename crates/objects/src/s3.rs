//! The S3 operations over [`ObjectStore`]. s3s has already parsed the
//! request, checked its signature (header or presigned), decoded an
//! aws-chunked body and resolved path- or virtual-host style; every method
//! here is storage semantics only.

use crate::access::{principal, Principal};
use crate::error::Error;
use crate::list::{self, Entry};
use crate::store::{
    bucket_exists, now_ms, random_id, read_object, write_object, Body, Checksums, ObjectMeta,
    ObjectRecord, ObjectStore, Received,
};
use bytes::Bytes;
use rusqlite::{params, OptionalExtension};
use s3s::checksum::ChecksumHasher;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result, S3};
use std::time::{Duration, UNIX_EPOCH};

/// S3's smallest part, except for the last one.
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_PART_NUMBER: i32 = 10_000;
const DEFAULT_MAX_KEYS: i32 = 1000;
/// GET bodies are read from their files in pieces of this size.
const READ_CHUNK: usize = 1024 * 1024;

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

fn unix_secs(ts: &Timestamp) -> i64 {
    time::OffsetDateTime::from(ts.clone()).unix_timestamp()
}

fn etag_matches(condition: &ETagCondition, etag: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

fn http_date(ts: &Timestamp) -> Option<String> {
    let mut buf = Vec::new();
    ts.format(TimestampFormat::HttpDate, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

/// Conditional GET/HEAD (RFC 9110 §13.2.2 order, as S3 applies it).
struct Conditions<'a> {
    if_match: Option<&'a ETagCondition>,
    if_none_match: Option<&'a ETagCondition>,
    if_modified_since: Option<&'a Timestamp>,
    if_unmodified_since: Option<&'a Timestamp>,
}

impl Conditions<'_> {
    fn check(&self, record: &ObjectRecord, not_modified: fn() -> S3Error) -> S3Result<()> {
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
                return Err(not_modified());
            }
        } else if let Some(since) = self.if_modified_since {
            if modified <= unix_secs(since) {
                return Err(not_modified());
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

/// What GetObject and HeadObject answer about an object: the conditions
/// checked and the range resolved once, so a HEAD describes exactly what
/// the same GET would send.
struct ObjectView {
    record: ObjectRecord,
    /// The bytes served: the requested range, or the whole body.
    range: std::ops::Range<u64>,
    /// `Content-Range`, for ranged requests only.
    content_range: Option<String>,
}

impl ObjectView {
    fn new(
        record: ObjectRecord,
        range: Option<&Range>,
        conditions: Conditions<'_>,
    ) -> S3Result<ObjectView> {
        conditions.check(&record, not_modified)?;
        let (range, content_range) = match range {
            None => (0..record.size, None),
            Some(range) => {
                let r = range
                    .check(record.size)
                    .map_err(|_| s3_error!(InvalidRange))?;
                let header = format!(
                    "bytes {}-{}/{}",
                    r.start,
                    r.end.saturating_sub(1),
                    record.size
                );
                (r, Some(header))
            }
        };
        Ok(ObjectView {
            record,
            range,
            content_range,
        })
    }
}

/// Builds a GetObjectOutput or HeadObjectOutput from an [`ObjectView`] plus
/// the output's own fields. The two s3s types share these field names but
/// no trait, so the shared part is written once here. Checksums describe the
/// whole object, so a ranged answer carries none.
macro_rules! object_output {
    ($output:ident, $view:expr, { $($field:ident: $value:expr),* $(,)? }) => {{
        let ObjectView { record, range, content_range } = $view;
        let mut meta = record.meta;
        let sums = if content_range.is_none() {
            std::mem::take(&mut meta.checksums)
        } else {
            Checksums::default()
        };
        $output {
            $($field: $value,)*
            content_length: Some(i64::try_from(range.end - range.start).unwrap_or(i64::MAX)),
            content_range,
            accept_ranges: Some("bytes".into()),
            last_modified: Some(timestamp(record.modified_ms)),
            e_tag: Some(ETag::Strong(record.etag)),
            content_type: meta.content_type,
            content_encoding: meta.content_encoding,
            content_disposition: meta.content_disposition,
            content_language: meta.content_language,
            cache_control: meta.cache_control,
            expires: meta.expires.as_deref().and_then(parse_http_date),
            metadata: (!meta.user.is_empty()).then(|| meta.user.into_iter().collect()),
            parts_count: meta.parts.and_then(|p| i32::try_from(p).ok()),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            checksum_crc64nvme: sums.crc64nvme,
            ..Default::default()
        }
    }};
}

fn not_modified() -> S3Error {
    s3_error!(NotModified)
}

fn precondition_failed() -> S3Error {
    s3_error!(PreconditionFailed)
}

/// A hasher for the checksums a request names (headers or algorithm).
fn hasher_for(
    algorithm: Option<&ChecksumAlgorithm>,
    given: &Checksums,
) -> S3Result<ChecksumHasher> {
    let mut hasher = ChecksumHasher::default();
    let mut enable = |name: &str| -> S3Result<()> {
        match name {
            "CRC32" => hasher.crc32 = Some(Default::default()),
            "CRC32C" => hasher.crc32c = Some(Default::default()),
            "SHA1" => hasher.sha1 = Some(Default::default()),
            "SHA256" => hasher.sha256 = Some(Default::default()),
            "CRC64NVME" => hasher.crc64nvme = Some(Default::default()),
            other => {
                return Err(s3_error!(
                    InvalidRequest,
                    "checksum algorithm {other} is not supported (CRC32, CRC32C, SHA1, SHA256, CRC64NVME are)"
                ))
            }
        }
        Ok(())
    };
    if let Some(algorithm) = algorithm {
        enable(&algorithm.as_str().to_ascii_uppercase())?;
    }
    for (name, value) in [
        ("CRC32", &given.crc32),
        ("CRC32C", &given.crc32c),
        ("SHA1", &given.sha1),
        ("SHA256", &given.sha256),
        ("CRC64NVME", &given.crc64nvme),
    ] {
        if value.is_some() {
            enable(name)?;
        }
    }
    Ok(hasher)
}

/// Checksums the client declared in headers, or in the trailer of an
/// aws-chunked body (known only once the body is read).
fn declared_checksums(
    headers: Checksums,
    trailers: Option<s3s::TrailingHeaders>,
) -> S3Result<Checksums> {
    let mut declared = headers;
    let Some(trailers) = trailers.and_then(|t| t.take()) else {
        return Ok(declared);
    };
    for (name, slot) in [
        ("x-amz-checksum-crc32", &mut declared.crc32),
        ("x-amz-checksum-crc32c", &mut declared.crc32c),
        ("x-amz-checksum-sha1", &mut declared.sha1),
        ("x-amz-checksum-sha256", &mut declared.sha256),
        ("x-amz-checksum-crc64nvme", &mut declared.crc64nvme),
    ] {
        if let Some(value) = trailers.get(name) {
            let value = value
                .to_str()
                .map_err(|_| s3_error!(InvalidArgument, "{name} trailer is not text"))?;
            *slot = Some(value.to_string());
        }
    }
    Ok(declared)
}

/// Verifies the received body against Content-MD5 and every declared
/// checksum; the computed checksums are what gets stored.
fn verify(
    received: &Received,
    content_md5: Option<&str>,
    declared: &Checksums,
) -> S3Result<Checksums> {
    use base64::Engine as _;
    if let Some(md5) = content_md5 {
        let given = base64::engine::general_purpose::STANDARD
            .decode(md5)
            .map_err(|_| s3_error!(InvalidDigest, "Content-MD5 is not base64"))?;
        if given != received.md5 {
            return Err(s3_error!(BadDigest, "Content-MD5 does not match the body"));
        }
    }
    let computed = Checksums::from(received.checksum.clone());
    for (name, want, got) in [
        ("CRC32", &declared.crc32, &computed.crc32),
        ("CRC32C", &declared.crc32c, &computed.crc32c),
        ("SHA1", &declared.sha1, &computed.sha1),
        ("SHA256", &declared.sha256, &computed.sha256),
        ("CRC64NVME", &declared.crc64nvme, &computed.crc64nvme),
    ] {
        if let Some(want) = want {
            if Some(want) != got.as_ref() {
                return Err(s3_error!(
                    BadDigest,
                    "the {name} checksum you specified did not match the calculated checksum"
                ));
            }
        }
    }
    Ok(computed)
}

fn checksums_of(
    input_crc32: Option<String>,
    crc32c: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
    crc64: Option<String>,
) -> Checksums {
    Checksums {
        crc32: input_crc32,
        crc32c,
        sha1,
        sha256,
        crc64nvme: crc64,
    }
}

/// Checks that `principal` may use `bucket` (copy sources; the request's
/// own bucket is checked in [`crate::access`]).
async fn authorize(store: &ObjectStore, principal: &Principal, bucket: &str) -> S3Result<()> {
    let Principal::App(app) = principal else {
        return Ok(());
    };
    match store.bucket(bucket).await? {
        Some(info) if info.owner.as_deref() == Some(app.as_str()) => Ok(()),
        Some(_) => Err(s3_error!(AccessDenied)),
        None => Err(s3_error!(NoSuchBucket)),
    }
}

impl ObjectStore {
    async fn object(&self, bucket: &str, key: &str) -> S3Result<ObjectRecord> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let found = self
            .inner
            .index
            .read_async(move |conn| {
                if !bucket_exists(conn, &bucket)? {
                    return Err(s3_error!(NoSuchBucket).into());
                }
                read_object(conn, &bucket, &key)
            })
            .await?;
        found.ok_or_else(|| s3_error!(NoSuchKey))
    }

    async fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        match self.bucket(bucket).await? {
            Some(_) => Ok(()),
            None => Err(s3_error!(NoSuchBucket)),
        }
    }

    /// Opens the body of `bucket/key` for reading; the record is read again
    /// if its file was replaced between the read and the open.
    async fn open_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> S3Result<(ObjectRecord, Option<std::fs::File>)> {
        for _ in 0..3 {
            let record = self.object(bucket, key).await?;
            let Body::File(id) = &record.body else {
                return Ok((record, None));
            };
            match std::fs::File::open(self.data_path(id)) {
                Ok(file) => return Ok((record, Some(file))),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(Error::from(err).into()),
            }
        }
        Err(s3_error!(
            InternalError,
            "object changed too often while being opened"
        ))
    }

    /// Records `record` in `bucket` after `check` (run inside the write,
    /// against the current object) passes, then removes the replaced body.
    async fn commit_object(
        &self,
        bucket: &str,
        record: ObjectRecord,
        check: impl FnOnce(Option<&ObjectRecord>) -> S3Result<()> + Send + 'static,
    ) -> S3Result<()> {
        let bucket_name = bucket.to_string();
        let body = record.body.clone();
        self.crash_point("object_write:body_durable");
        let result = self
            .inner
            .index
            .write(move |conn| {
                let current = read_object(conn, &bucket_name, &record.key)?;
                check(current.as_ref())?;
                write_object(conn, &bucket_name, &record)
            })
            .await;
        match result {
            Ok(old) => {
                self.crash_point("object_write:recorded");
                self.remove_files(old.into_iter().collect()).await;
                Ok(())
            }
            Err(err) => {
                self.discard(&body).await;
                Err(err.into())
            }
        }
    }

    fn meta_from(
        content_type: Option<String>,
        content_encoding: Option<String>,
        content_disposition: Option<String>,
        content_language: Option<String>,
        cache_control: Option<String>,
        expires: Option<Timestamp>,
        metadata: Option<Metadata>,
    ) -> ObjectMeta {
        ObjectMeta {
            content_type,
            content_encoding,
            content_disposition,
            content_language,
            cache_control,
            expires: expires.as_ref().and_then(http_date),
            user: metadata.unwrap_or_default().into_iter().collect(),
            checksums: Checksums::default(),
            parts: None,
        }
    }
}

fn object_entry(record: &list::Row) -> Object {
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
    objects: Vec<list::Row>,
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
                if !bucket_exists(conn, &bucket)? {
                    return Err(s3_error!(NoSuchBucket).into());
                }
                list::entries(conn, &bucket, &prefix, delimiter.as_deref(), &after, max)
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

/// A part as the index records it.
struct PartRow {
    number: i32,
    size: u64,
    etag: String,
    modified_ms: i64,
    checksums: Checksums,
    file: String,
}

fn read_parts(conn: &rusqlite::Connection, upload: &str) -> crate::error::Result<Vec<PartRow>> {
    let mut stmt = conn.prepare(
        "SELECT number, size, etag, modified_ms, checksums, file FROM parts WHERE upload = ?1 ORDER BY number",
    )?;
    let rows = stmt.query_map([upload], |row| {
        Ok((
            row.get::<_, i32>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, String>(5)?,
        ))
    })?;
    let mut parts = Vec::new();
    for row in rows {
        let (number, size, etag, modified_ms, checksums, file) = row?;
        parts.push(PartRow {
            number,
            size: u64::try_from(size).unwrap_or(0),
            etag,
            modified_ms,
            checksums: serde_json::from_str(&checksums)?,
            file,
        });
    }
    Ok(parts)
}

/// An upload's record: (bucket, key, meta).
fn read_upload(
    conn: &rusqlite::Connection,
    id: &str,
) -> crate::error::Result<Option<(String, String, ObjectMeta)>> {
    let row = conn
        .query_row(
            "SELECT bucket, key, meta FROM uploads WHERE id = ?1",
            [id],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            },
        )
        .optional()?;
    match row {
        Some((bucket, key, meta)) => Ok(Some((bucket, key, serde_json::from_str(&meta)?))),
        None => Ok(None),
    }
}

fn upload_of(
    found: Option<(String, String, ObjectMeta)>,
    bucket: &str,
    key: &str,
) -> crate::error::Result<ObjectMeta> {
    match found {
        Some((b, k, meta)) if b == bucket && k == key => Ok(meta),
        _ => Err(s3_error!(NoSuchUpload).into()),
    }
}

/// S3's composite checksum of a multipart object: the checksum of the
/// parts' binary checksums, then `-<parts>`.
fn composite(values: &[Option<String>], algorithm: &str) -> Option<String> {
    use base64::Engine as _;
    use s3s::crypto::Checksum as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut joined = Vec::new();
    for value in values {
        joined.extend(engine.decode(value.as_ref()?).ok()?);
    }
    let digest: Vec<u8> = match algorithm {
        "CRC32" => s3s::crypto::Crc32::checksum(&joined).as_ref().to_vec(),
        "CRC32C" => s3s::crypto::Crc32c::checksum(&joined).as_ref().to_vec(),
        "SHA1" => s3s::crypto::Sha1::checksum(&joined).as_ref().to_vec(),
        "SHA256" => s3s::crypto::Sha256::checksum(&joined).as_ref().to_vec(),
        _ => return None,
    };
    Some(format!("{}-{}", engine.encode(digest), values.len()))
}

/// Parses `bytes=first-last` of UploadPartCopy.
fn copy_range(range: Option<&str>, size: u64) -> S3Result<std::ops::Range<u64>> {
    let Some(range) = range else {
        return Ok(0..size);
    };
    let parsed = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    match parsed {
        Some((first, last)) if first <= last && last < size => Ok(first..last + 1),
        _ => Err(s3_error!(
            InvalidRange,
            "x-amz-copy-source-range must be bytes=first-last within the source object"
        )),
    }
}

fn copy_source(source: &CopySource) -> S3Result<(String, String)> {
    match source {
        CopySource::Bucket { bucket, key, .. } => Ok((bucket.to_string(), key.to_string())),
        _ => Err(s3_error!(
            NotImplemented,
            "access point copy sources are not supported"
        )),
    }
}

#[async_trait::async_trait]
impl S3 for ObjectStore {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let who = principal(&req.extensions);
        let buckets = self
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

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let owner = match principal(&req.extensions) {
            Principal::Admin => None,
            Principal::App(app) => Some(app),
        };
        let name = req.input.bucket;
        match ObjectStore::create_bucket(self, &name, owner.as_deref()).await {
            Ok(_) => {}
            Err(Error::BucketExists(_)) => {
                let existing = self.bucket(&name).await?;
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

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        ObjectStore::delete_bucket(self, &req.input.bucket, false).await?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: None,
        }))
    }

    /// Buckets are never versioned: the answer of a bucket whose versioning
    /// was never enabled (no `Status`). PutBucketVersioning stays
    /// NotImplemented.
    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketVersioningOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        let Some(body) = input.body else {
            return Err(s3_error!(IncompleteBody));
        };
        self.require_bucket(&input.bucket).await?;
        let headers = checksums_of(
            input.checksum_crc32,
            input.checksum_crc32c,
            input.checksum_sha1,
            input.checksum_sha256,
            input.checksum_crc64nvme,
        );
        let hasher = hasher_for(input.checksum_algorithm.as_ref(), &headers)?;
        let received = self.receive(body, hasher, true).await?;
        let declared = declared_checksums(headers, req.trailing_headers);
        let verified = declared.and_then(|d| verify(&received, input.content_md5.as_deref(), &d));
        let checksums = match verified {
            Ok(c) => c,
            Err(err) => {
                self.discard(&received.body).await;
                return Err(err);
            }
        };
        let mut meta = ObjectStore::meta_from(
            input.content_type,
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires,
            input.metadata,
        );
        meta.checksums = checksums.clone();
        let record = ObjectRecord {
            key: input.key,
            size: received.size,
            etag: hex::encode(received.md5),
            modified_ms: now_ms(),
            meta,
            body: received.body,
        };
        let etag = record.etag.clone();
        let (if_match, if_none_match) = (input.if_match, input.if_none_match);
        self.commit_object(&input.bucket, record, move |current| {
            match (current, &if_match) {
                (None, Some(_)) => return Err(s3_error!(NoSuchKey)),
                (Some(cur), Some(cond)) if !etag_matches(cond, &cur.etag) => {
                    return Err(precondition_failed())
                }
                _ => {}
            }
            if let (Some(cur), Some(cond)) = (current, &if_none_match) {
                if etag_matches(cond, &cur.etag) {
                    return Err(precondition_failed());
                }
            }
            Ok(())
        })
        .await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            checksum_crc32: checksums.crc32,
            checksum_crc32c: checksums.crc32c,
            checksum_sha1: checksums.sha1,
            checksum_sha256: checksums.sha256,
            checksum_crc64nvme: checksums.crc64nvme,
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let (record, file) = self.open_object(&input.bucket, &input.key).await?;
        let view = ObjectView::new(record, input.range.as_ref(), read_conditions!(input))?;
        let body = match (&view.record.body, file) {
            (Body::Inline(bytes), _) => {
                let slice: Bytes = bytes.slice(
                    usize::try_from(view.range.start).unwrap_or(0)
                        ..usize::try_from(view.range.end).unwrap_or(0),
                );
                StreamingBlob::from(s3s::Body::from(slice))
            }
            (Body::File(_), Some(file)) => {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                let mut file = tokio::fs::File::from_std(file);
                file.seek(std::io::SeekFrom::Start(view.range.start))
                    .await
                    .map_err(Error::from)?;
                let reader = file.take(view.range.end - view.range.start);
                StreamingBlob::wrap(tokio_util::io::ReaderStream::with_capacity(
                    reader, READ_CHUNK,
                ))
            }
            (Body::File(_), None) => return Err(s3_error!(InternalError, "object body vanished")),
        };
        Ok(S3Response::new(object_output!(GetObjectOutput, view, {
            body: Some(body),
        })))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let record = self.object(&input.bucket, &input.key).await?;
        let view = ObjectView::new(record, input.range.as_ref(), read_conditions!(input))?;
        Ok(S3Response::new(object_output!(HeadObjectOutput, view, {})))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let (bucket, key) = (req.input.bucket, req.input.key);
        let removed = self
            .inner
            .index
            .write(move |conn| {
                if !bucket_exists(conn, &bucket)? {
                    return Err(s3_error!(NoSuchBucket).into());
                }
                delete_row(conn, &bucket, &key)
            })
            .await?;
        self.crash_point("object_delete:recorded");
        self.remove_files(removed.into_iter().collect()).await;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let bucket = req.input.bucket;
        let quiet = req.input.delete.quiet.unwrap_or(false);
        let keys: Vec<String> = req
            .input
            .delete
            .objects
            .into_iter()
            .map(|o| o.key)
            .collect();
        if keys.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "at most 1000 keys may be deleted per request"
            ));
        }
        let deleted_keys = keys.clone();
        let files = self
            .inner
            .index
            .write(move |conn| {
                if !bucket_exists(conn, &bucket)? {
                    return Err(s3_error!(NoSuchBucket).into());
                }
                let mut files = Vec::new();
                for key in &keys {
                    files.extend(delete_row(conn, &bucket, key)?);
                }
                Ok(files)
            })
            .await?;
        self.crash_point("object_delete:recorded");
        self.remove_files(files).await;
        let deleted = (!quiet).then(|| {
            deleted_keys
                .into_iter()
                .map(|key| DeletedObject {
                    key: Some(key),
                    ..Default::default()
                })
                .collect()
        });
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted,
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let who = principal(&req.extensions);
        let input = req.input;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        authorize(self, &who, &src_bucket).await?;
        self.require_bucket(&input.bucket).await?;
        let source = self.object(&src_bucket, &src_key).await?;
        copy_source_conditions!(input).check(&source, precondition_failed)?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if src_bucket == input.bucket && src_key == input.key && !replace {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        let mut meta = if replace {
            ObjectStore::meta_from(
                input.content_type,
                input.content_encoding,
                input.content_disposition,
                input.content_language,
                input.cache_control,
                input.expires,
                input.metadata,
            )
        } else {
            ObjectMeta {
                checksums: Checksums::default(),
                parts: None,
                ..source.meta.clone()
            }
        };
        let mut wanted = source.meta.checksums.clone();
        if source.meta.parts.is_some() {
            wanted = Checksums::default();
        }
        let hasher = hasher_for(input.checksum_algorithm.as_ref(), &wanted)?;
        let received = self
            .assemble(vec![(source.body.clone(), 0..source.size)], hasher, true)
            .await?;
        meta.checksums = Checksums::from(received.checksum.clone());
        let modified_ms = now_ms();
        let record = ObjectRecord {
            key: input.key,
            size: received.size,
            etag: hex::encode(received.md5),
            modified_ms,
            meta,
            body: received.body,
        };
        let etag = record.etag.clone();
        let sums = record.meta.checksums.clone();
        self.commit_object(&input.bucket, record, |_| Ok(()))
            .await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(etag)),
                last_modified: Some(timestamp(modified_ms)),
                checksum_crc32: sums.crc32,
                checksum_crc32c: sums.crc32c,
                checksum_sha1: sums.sha1,
                checksum_sha256: sums.sha256,
                checksum_crc64nvme: sums.crc64nvme,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let encode = url_encoded(input.encoding_type.as_ref())?;
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let marker = input.marker.clone().unwrap_or_default();
        let listing = self
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

    async fn list_objects_v2(
        &self,
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
        let listing = self
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

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = req.input;
        let encode = url_encoded(input.encoding_type.as_ref())?;
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let marker = input.key_marker.clone().unwrap_or_default();
        let listing = self
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

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        self.require_bucket(&input.bucket).await?;
        let meta = ObjectStore::meta_from(
            input.content_type,
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires,
            input.metadata,
        );
        hasher_for(input.checksum_algorithm.as_ref(), &Checksums::default())?;
        let id = random_id();
        let (bucket, key, upload) = (input.bucket.clone(), input.key.clone(), id.clone());
        let meta_text = serde_json::to_string(&meta).map_err(Error::from)?;
        self.inner
            .index
            .write(move |conn| {
                if !bucket_exists(conn, &bucket)? {
                    return Err(s3_error!(NoSuchBucket).into());
                }
                conn.execute(
                    "INSERT INTO uploads (id, bucket, key, initiated_ms, meta) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![upload, bucket, key, now_ms(), meta_text],
                )?;
                Ok(())
            })
            .await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            checksum_algorithm: input.checksum_algorithm,
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        check_part_number(input.part_number)?;
        let Some(body) = input.body else {
            return Err(s3_error!(IncompleteBody));
        };
        self.check_upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let headers = checksums_of(
            input.checksum_crc32,
            input.checksum_crc32c,
            input.checksum_sha1,
            input.checksum_sha256,
            input.checksum_crc64nvme,
        );
        let hasher = hasher_for(input.checksum_algorithm.as_ref(), &headers)?;
        let received = self.receive(body, hasher, false).await?;
        let declared = declared_checksums(headers, req.trailing_headers);
        let checksums =
            match declared.and_then(|d| verify(&received, input.content_md5.as_deref(), &d)) {
                Ok(c) => c,
                Err(err) => {
                    self.discard(&received.body).await;
                    return Err(err);
                }
            };
        let etag = hex::encode(received.md5);
        self.commit_part(
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

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let who = principal(&req.extensions);
        let input = req.input;
        check_part_number(input.part_number)?;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        authorize(self, &who, &src_bucket).await?;
        self.check_upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let source = self.object(&src_bucket, &src_key).await?;
        copy_source_conditions!(input).check(&source, precondition_failed)?;
        let range = copy_range(input.copy_source_range.as_deref(), source.size)?;
        let received = self
            .assemble(
                vec![(source.body.clone(), range)],
                ChecksumHasher::default(),
                false,
            )
            .await?;
        let etag = hex::encode(received.md5);
        let checksums = Checksums::default();
        self.commit_part(
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
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
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
        let (bucket, key, upload) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let (meta, stored) = self
            .inner
            .index
            .read_async(move |conn| {
                let meta = upload_of(read_upload(conn, &upload)?, &bucket, &key)?;
                Ok((meta, read_parts(conn, &upload)?))
            })
            .await?;
        let mut chosen: Vec<&PartRow> = Vec::with_capacity(requested.len());
        let mut previous = 0;
        for (i, part) in requested.iter().enumerate() {
            let number = part.part_number.unwrap_or(0);
            if number <= previous {
                return Err(s3_error!(InvalidPartOrder));
            }
            previous = number;
            let found = stored
                .iter()
                .find(|p| p.number == number)
                .ok_or_else(|| s3_error!(InvalidPart, "part {number} was not uploaded"))?;
            if let Some(etag) = &part.e_tag {
                if etag.value() != found.etag {
                    return Err(s3_error!(
                        InvalidPart,
                        "part {number}'s ETag does not match"
                    ));
                }
            }
            if i + 1 < requested.len() && found.size < MIN_PART_SIZE {
                return Err(s3_error!(
                    EntityTooSmall,
                    "part {number} is smaller than 5 MiB and not the last part"
                ));
            }
            chosen.push(found);
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
        let sources: Vec<(Body, std::ops::Range<u64>)> = chosen
            .iter()
            .map(|p| (Body::File(p.file.clone()), 0..p.size))
            .collect();
        let part_count = chosen.len();
        let composite_of = |pick: fn(&Checksums) -> &Option<String>, algorithm| {
            let values: Vec<Option<String>> =
                chosen.iter().map(|p| pick(&p.checksums).clone()).collect();
            composite(&values, algorithm)
        };
        let checksums = Checksums {
            crc32: composite_of(|c| &c.crc32, "CRC32"),
            crc32c: composite_of(|c| &c.crc32c, "CRC32C"),
            sha1: composite_of(|c| &c.sha1, "SHA1"),
            sha256: composite_of(|c| &c.sha256, "SHA256"),
            crc64nvme: None,
        };
        let assembled = self.concatenate(sources).await?;
        self.crash_point("object_complete:assembled");
        let mut meta = meta;
        meta.parts = Some(u32::try_from(part_count).unwrap_or(u32::MAX));
        meta.checksums = checksums.clone();
        let record = ObjectRecord {
            key: input.key.clone(),
            size: assembled.1,
            etag: etag.clone(),
            modified_ms: now_ms(),
            meta,
            body: Body::File(assembled.0.clone()),
        };
        let (bucket, upload) = (input.bucket.clone(), input.upload_id.clone());
        let key = input.key.clone();
        let result = self
            .inner
            .index
            .write(move |conn| {
                upload_of(read_upload(conn, &upload)?, &bucket, &key)?;
                let parts: Vec<String> = read_parts(conn, &upload)?
                    .into_iter()
                    .map(|p| p.file)
                    .collect();
                let old = write_object(conn, &bucket, &record)?;
                conn.execute("DELETE FROM parts WHERE upload = ?1", [&upload])?;
                conn.execute("DELETE FROM uploads WHERE id = ?1", [&upload])?;
                Ok(parts.into_iter().chain(old).collect::<Vec<_>>())
            })
            .await;
        match result {
            Ok(files) => {
                self.crash_point("object_complete:recorded");
                self.remove_files(files).await;
            }
            Err(err) => {
                self.remove_files(vec![assembled.0]).await;
                return Err(err.into());
            }
        }
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            e_tag: Some(ETag::Strong(etag)),
            checksum_crc32: checksums.crc32,
            checksum_crc32c: checksums.crc32c,
            checksum_sha1: checksums.sha1,
            checksum_sha256: checksums.sha256,
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let (bucket, key, upload) = (input.bucket, input.key, input.upload_id);
        let files = self
            .inner
            .index
            .write(move |conn| {
                upload_of(read_upload(conn, &upload)?, &bucket, &key)?;
                let files: Vec<String> = read_parts(conn, &upload)?
                    .into_iter()
                    .map(|p| p.file)
                    .collect();
                conn.execute("DELETE FROM parts WHERE upload = ?1", [&upload])?;
                conn.execute("DELETE FROM uploads WHERE id = ?1", [&upload])?;
                Ok(files)
            })
            .await?;
        self.remove_files(files).await;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(
        &self,
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
        let parts = self
            .inner
            .index
            .read_async(move |conn| {
                upload_of(read_upload(conn, &upload)?, &bucket, &key)?;
                read_parts(conn, &upload)
            })
            .await?;
        let after: Vec<&PartRow> = parts.iter().filter(|p| p.number > marker).collect();
        let truncated = after.len() > max;
        let page: Vec<&PartRow> = after.into_iter().take(max).collect();
        let next = truncated.then(|| page.last().map(|p| p.number)).flatten();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            max_parts: Some(i32::try_from(max).unwrap_or(1000)),
            is_truncated: Some(truncated),
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

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let max = usize::try_from(input.max_uploads.unwrap_or(1000).clamp(0, 1000)).unwrap_or(1000);
        let (bucket, prefix) = (
            input.bucket.clone(),
            input.prefix.clone().unwrap_or_default(),
        );
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone().unwrap_or_default();
        let rows = self
            .inner
            .index
            .read_async(move |conn| {
                if !bucket_exists(conn, &bucket)? {
                    return Err(s3_error!(NoSuchBucket).into());
                }
                let mut stmt = conn.prepare(
                    "SELECT key, id, initiated_ms FROM uploads WHERE bucket = ?1 AND key >= ?2
                     AND (key > ?3 OR (key = ?3 AND id > ?4)) ORDER BY key, id LIMIT ?5",
                )?;
                let rows = stmt.query_map(
                    params![
                        bucket,
                        prefix,
                        key_marker,
                        id_marker,
                        i64::try_from(max + 1).unwrap_or(1001)
                    ],
                    |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, i64>(2)?,
                        ))
                    },
                )?;
                let mut out = Vec::new();
                for row in rows {
                    let row = row?;
                    if !row.0.starts_with(&prefix) {
                        break;
                    }
                    out.push(row);
                }
                Ok(out)
            })
            .await?;
        let truncated = rows.len() > max;
        let page: Vec<_> = rows.into_iter().take(max).collect();
        let last = if truncated {
            page.last().cloned()
        } else {
            None
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(i32::try_from(max).unwrap_or(1000)),
            is_truncated: Some(truncated),
            next_key_marker: last.as_ref().map(|l| l.0.clone()),
            next_upload_id_marker: last.map(|l| l.1),
            uploads: Some(
                page.into_iter()
                    .map(|(key, id, initiated)| MultipartUpload {
                        key: Some(key),
                        upload_id: Some(id),
                        initiated: Some(timestamp(initiated)),
                        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }
}

/// Deletes one object's row, returning its body file.
fn delete_row(
    conn: &rusqlite::Connection,
    bucket: &str,
    key: &str,
) -> crate::error::Result<Option<String>> {
    let file: Option<Option<String>> = conn
        .query_row(
            "DELETE FROM objects WHERE bucket = ?1 AND key = ?2 RETURNING file",
            params![bucket, key],
            |row| row.get(0),
        )
        .optional()?;
    Ok(file.flatten())
}

impl ObjectStore {
    async fn check_upload(&self, bucket: &str, key: &str, upload: &str) -> S3Result<()> {
        let (bucket, key, upload) = (bucket.to_string(), key.to_string(), upload.to_string());
        self.inner
            .index
            .read_async(move |conn| {
                if !bucket_exists(conn, &bucket)? {
                    return Err(s3_error!(NoSuchBucket).into());
                }
                upload_of(read_upload(conn, &upload)?, &bucket, &key).map(|_| ())
            })
            .await?;
        Ok(())
    }

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
                upload_of(read_upload(conn, &upload)?, &bucket, &key)?;
                let old: Option<String> = conn
                    .query_row(
                        "SELECT file FROM parts WHERE upload = ?1 AND number = ?2",
                        params![upload, number],
                        |row| row.get(0),
                    )
                    .optional()?;
                conn.execute(
                    "INSERT OR REPLACE INTO parts (upload, number, size, etag, modified_ms, checksums, file)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![upload, number, size, etag, now_ms(), sums, part_file],
                )?;
                Ok(old)
            })
            .await;
        match result {
            Ok(old) => {
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
