//! Listing operations: ListObjects v1 and v2 (current objects), and
//! ListObjectVersions (every version and delete marker).

use super::{bucket_config, timestamp, DEFAULT_MAX_KEYS};
use crate::access::owner_id;
use crate::error::Result;
use crate::index::{
    self,
    listing::{After, Entry, Row, VersionRow},
};
use crate::store::ObjectStore;
use rusqlite::Connection;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

fn owner(id: &str) -> Owner {
    Owner {
        display_name: Some(id.to_string()),
        id: Some(id.to_string()),
    }
}

fn object_entry(record: &Row, encode: bool, owner_id: Option<&str>) -> Object {
    Object {
        key: Some(encoded(&record.key, encode)),
        size: Some(i64::try_from(record.size).unwrap_or(i64::MAX)),
        e_tag: Some(ETag::Strong(record.etag.clone())),
        last_modified: Some(timestamp(record.modified_ms)),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        owner: owner_id.map(owner),
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
/// unreserved characters and `/`), or as is.
fn encoded(s: &str, encode: bool) -> String {
    if !encode {
        return s.to_string();
    }
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

fn encode_opt(s: Option<String>, encode: bool) -> Option<String> {
    s.map(|s| encoded(&s, encode))
}

/// An empty delimiter is no delimiter (and is not echoed).
fn delimiter_of(given: Option<String>) -> Option<String> {
    given.filter(|d| !d.is_empty())
}

/// One page of a listing: items and common prefixes, in order.
struct Listing<T> {
    items: Vec<T>,
    prefixes: Vec<String>,
    truncated: bool,
    /// The last entry returned: a key (with the item) or a common prefix.
    last: Option<(String, Option<T>)>,
    /// The bucket owner's canonical id (the owner of every object in it).
    owner: String,
}

/// The walk of one listing, run on a read connection.
type Walk<T> = Box<dyn FnOnce(&Connection) -> Result<(Vec<Entry<T>>, bool)> + Send>;

impl ObjectStore {
    /// Runs `walk` over `bucket` (which must exist) and sorts its entries
    /// into a [`Listing`] of at most `max` entries.
    async fn list<T: Clone + Send + 'static>(
        &self,
        bucket: &str,
        max: usize,
        key_of: fn(&T) -> &str,
        walk: Walk<T>,
    ) -> S3Result<Listing<T>> {
        let config = bucket_config(self, bucket).await?;
        let (entries, truncated) = self.inner.index.read_async(walk).await?;
        let mut listing = Listing {
            items: Vec::new(),
            prefixes: Vec::new(),
            // Nothing is returned when nothing may be: a page of zero keys
            // is complete.
            truncated: truncated && max > 0,
            last: None,
            owner: owner_id(config.owner.as_deref()).to_string(),
        };
        for entry in entries {
            match entry {
                Entry::Item(item) => {
                    listing.last = Some((key_of(&item).to_string(), Some(item.clone())));
                    listing.items.push(item);
                }
                Entry::Prefix(p) => {
                    listing.last = Some((p.clone(), None));
                    listing.prefixes.push(p);
                }
            }
        }
        Ok(listing)
    }

    /// A page of current objects.
    async fn list_current(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: &str,
        max: usize,
    ) -> S3Result<Listing<Row>> {
        let (b, prefix, after) = (bucket.to_string(), prefix.to_string(), after.to_string());
        let delimiter = delimiter.map(str::to_string);
        let walk: Walk<Row> = Box::new(move |conn| {
            index::listing::entries(conn, &b, &prefix, delimiter.as_deref(), &after, max)
        });
        self.list(bucket, max, |r| &r.key, walk).await
    }
}

fn common_prefixes(prefixes: &[String], encode: bool) -> Option<Vec<CommonPrefix>> {
    (!prefixes.is_empty()).then(|| {
        prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(encoded(p, encode)),
            })
            .collect()
    })
}

pub(super) async fn list_objects(
    store: &ObjectStore,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let input = req.input;
    let encode = url_encoded(input.encoding_type.as_ref())?;
    let max = max_keys(input.max_keys)?;
    let delimiter = delimiter_of(input.delimiter);
    let prefix = input.prefix.clone().unwrap_or_default();
    let marker = input.marker.clone().unwrap_or_default();
    let listing = store
        .list_current(&input.bucket, &prefix, delimiter.as_deref(), &marker, max)
        .await?;
    let next_marker = (listing.truncated && delimiter.is_some())
        .then(|| listing.last.clone().map(|(key, _)| key))
        .flatten();
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        // ListObjects v1 echoes its prefix as given, even with
        // encoding-type=url (clients decode only keys, markers and the
        // delimiter of a v1 answer).
        prefix: Some(input.prefix.unwrap_or_default()),
        marker: Some(encode_opt(input.marker, encode).unwrap_or_default()),
        max_keys: Some(i32::try_from(max).unwrap_or(DEFAULT_MAX_KEYS)),
        delimiter: encode_opt(delimiter, encode),
        is_truncated: Some(listing.truncated),
        next_marker: encode_opt(next_marker, encode),
        contents: Some(
            listing
                .items
                .iter()
                .map(|r| object_entry(r, encode, Some(&listing.owner)))
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
    let delimiter = delimiter_of(input.delimiter);
    let prefix = input.prefix.clone().unwrap_or_default();
    let after = match input
        .continuation_token
        .as_deref()
        .filter(|t| !t.is_empty())
    {
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
        .list_current(&input.bucket, &prefix, delimiter.as_deref(), &after, max)
        .await?;
    let next = listing
        .truncated
        .then(|| listing.last.as_ref().map(|(key, _)| hex::encode(key)))
        .flatten();
    let fetch_owner = input.fetch_owner.unwrap_or(false);
    let contents: Vec<Object> = listing
        .items
        .iter()
        .map(|r| object_entry(r, encode, fetch_owner.then_some(listing.owner.as_str())))
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
        delimiter: encode_opt(delimiter, encode),
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
    let delimiter = delimiter_of(input.delimiter);
    let (b, prefix) = (
        input.bucket.clone(),
        input.prefix.clone().unwrap_or_default(),
    );
    let key_marker = input.key_marker.clone().unwrap_or_default();
    let version_marker = input.version_id_marker.clone().filter(|v| !v.is_empty());
    if version_marker.is_some() && key_marker.is_empty() {
        return Err(s3_error!(
            InvalidArgument,
            "A version-id marker cannot be specified without a key marker."
        ));
    }
    let walk_delimiter = delimiter.clone();
    let walk: Walk<VersionRow> = Box::new(move |conn| {
        // After the marker version of the marker key: its older versions
        // follow; without one, the marker key is done. A marker version
        // deleted since the last page (as a client emptying a bucket page
        // by page does) still has its place, by the seq its id carries;
        // a deleted `null` version (or one from before ids carried a seq)
        // has none left, so the key is listed again from its newest
        // version rather than skipping versions that are still there.
        let seq = match &version_marker {
            Some(version) => index::listing::seq_of(conn, &b, &key_marker, version)?
                .or_else(|| index::objects::seq_in_version_id(version))
                .or_else(|| index::objects::is_version_id(version).then_some(i64::MAX))
                .ok_or_else(|| s3_error!(InvalidArgument, "Invalid version id specified"))?,
            None => i64::MIN,
        };
        let after = After {
            key: &key_marker,
            seq: Some(seq),
        };
        index::listing::versions(conn, &b, &prefix, walk_delimiter.as_deref(), &after, max)
    });
    let listing = store.list(&input.bucket, max, |r| &r.key, walk).await?;
    let (next_key, next_version) = match (listing.truncated, &listing.last) {
        (true, Some((key, item))) => (Some(key.clone()), item.as_ref().map(|i| i.version.clone())),
        _ => (None, None),
    };
    let owner = owner(&listing.owner);
    let mut versions = Vec::new();
    let mut markers = Vec::new();
    for row in listing.items {
        if row.marker {
            markers.push(DeleteMarkerEntry {
                key: Some(encoded(&row.key, encode)),
                version_id: Some(row.version),
                is_latest: Some(row.latest),
                last_modified: Some(timestamp(row.modified_ms)),
                owner: Some(owner.clone()),
            });
        } else {
            versions.push(ObjectVersion {
                key: Some(encoded(&row.key, encode)),
                version_id: Some(row.version),
                is_latest: Some(row.latest),
                size: Some(i64::try_from(row.size).unwrap_or(i64::MAX)),
                e_tag: Some(ETag::Strong(row.etag)),
                last_modified: Some(timestamp(row.modified_ms)),
                storage_class: Some(ObjectVersionStorageClass::from_static(
                    ObjectVersionStorageClass::STANDARD,
                )),
                owner: Some(owner.clone()),
                ..Default::default()
            });
        }
    }
    Ok(S3Response::new(ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: Some(encode_opt(input.prefix, encode).unwrap_or_default()),
        key_marker: Some(encode_opt(input.key_marker, encode).unwrap_or_default()),
        version_id_marker: Some(input.version_id_marker.unwrap_or_default()),
        max_keys: Some(i32::try_from(max).unwrap_or(DEFAULT_MAX_KEYS)),
        delimiter: encode_opt(delimiter, encode),
        is_truncated: Some(listing.truncated),
        next_version_id_marker: next_version,
        next_key_marker: encode_opt(next_key, encode),
        versions: (!versions.is_empty()).then_some(versions),
        delete_markers: (!markers.is_empty()).then_some(markers),
        common_prefixes: common_prefixes(&listing.prefixes, encode),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}
