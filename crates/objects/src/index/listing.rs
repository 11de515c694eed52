//! Ordered listing over the index. Keys sort by their UTF-8 bytes (SQLite's
//! BINARY collation is `memcmp`), which is S3's order; a common prefix is
//! skipped in one seek past every key that starts with it.
//!
//! Two listings share that walk: of current objects (ListObjects), and of
//! every version and delete marker, newest first within a key
//! (ListObjectVersions).

use crate::error::Result;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row as SqlRow};

/// What a listing row needs (no metadata, no body).
#[derive(Clone)]
pub(crate) struct Row {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub modified_ms: i64,
}

/// One version in a ListObjectVersions listing.
#[derive(Clone)]
pub(crate) struct VersionRow {
    pub key: String,
    pub version: String,
    pub latest: bool,
    pub marker: bool,
    /// Orders the key's versions (larger is newer); the position to resume
    /// after, within the key.
    pub seq: i64,
    pub size: u64,
    pub etag: String,
    pub modified_ms: i64,
}

pub(crate) enum Entry<T> {
    Item(T),
    Prefix(String),
}

const BATCH: i64 = 1000;

/// Where a listing resumes: after this key (or common prefix), and, for
/// versions, after this seq within the key.
pub(crate) struct After<'a> {
    pub key: &'a str,
    /// For versions: those of `key` older than this seq are still to come
    /// (`i64::MIN`: none of them).
    pub seq: Option<i64>,
}

/// The common prefix `key` rolls up to under `prefix` at `delimiter`.
fn common_prefix(key: &str, prefix: &str, delimiter: Option<&str>) -> Option<String> {
    let d = delimiter?;
    key[prefix.len()..]
        .find(d)
        .map(|pos| key[..prefix.len() + pos + d.len()].to_string())
}

/// A bound past every key that starts with `common` (0xFF never occurs in
/// UTF-8).
fn past(common: &str) -> Vec<u8> {
    let mut bound = common.as_bytes().to_vec();
    bound.push(0xFF);
    bound
}

/// The walk shared by both listings: rows of `bucket` from `query`, in key
/// order (parameters: bucket, prefix, cursor key, limit, and the cursor's
/// seq when `after.seq` is given), keys outside `prefix` ending it, keys
/// rolled up to common prefixes at `delimiter`. Up to `max` entries; the
/// flag says whether more follow.
#[allow(clippy::too_many_arguments)]
fn walk<T>(
    conn: &Connection,
    query: &str,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: &After<'_>,
    max: usize,
    decode: impl Fn(&SqlRow<'_>) -> rusqlite::Result<T>,
    key_of: impl Fn(&T) -> &str,
    seq_of: impl Fn(&T) -> Option<i64>,
) -> Result<(Vec<Entry<T>>, bool)> {
    let mut stmt = conn.prepare_cached(query)?;
    let mut out = Vec::new();
    let mut cursor: (Vec<u8>, i64) = (after.key.as_bytes().to_vec(), after.seq.unwrap_or(i64::MIN));
    loop {
        let mut bound: Vec<Value> = vec![
            Value::Text(bucket.to_string()),
            Value::Text(prefix.to_string()),
            Value::Blob(cursor.0.clone()),
            Value::Integer(BATCH),
        ];
        if after.seq.is_some() {
            bound.push(Value::Integer(cursor.1));
        }
        let rows = stmt.query_map(params_from_iter(bound), |row| decode(row))?;
        let mut seen = 0;
        let mut seek: Option<Vec<u8>> = None;
        for row in rows {
            let row = row?;
            seen += 1;
            let key = key_of(&row);
            if !key.starts_with(prefix) {
                return Ok((out, false));
            }
            if let Some(common) = common_prefix(key, prefix, delimiter) {
                if common.as_str() > after.key {
                    if out.len() == max {
                        return Ok((out, true));
                    }
                    out.push(Entry::Prefix(common.clone()));
                }
                seek = Some(past(&common));
                break;
            }
            if out.len() == max {
                return Ok((out, true));
            }
            cursor = (key.as_bytes().to_vec(), seq_of(&row).unwrap_or(i64::MIN));
            out.push(Entry::Item(row));
        }
        match seek {
            Some(bound) => cursor = (bound, i64::MIN),
            None if seen < BATCH => return Ok((out, false)),
            None => {}
        }
    }
}

/// Up to `max` current objects of `bucket` under `prefix`, after `after` (a
/// key, or a common prefix already returned), rolling keys up to common
/// prefixes at `delimiter`. The flag says whether more entries follow.
pub(crate) fn entries(
    conn: &Connection,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: &str,
    max: usize,
) -> Result<(Vec<Entry<Row>>, bool)> {
    walk(
        conn,
        "SELECT key, size, etag, modified_ms FROM objects
         WHERE bucket = ?1 AND key >= ?2 AND key > CAST(?3 AS TEXT)
           AND latest = 1 AND marker = 0
         ORDER BY key LIMIT ?4",
        bucket,
        prefix,
        delimiter,
        &After {
            key: after,
            seq: None,
        },
        max,
        |row| {
            Ok(Row {
                key: row.get(0)?,
                size: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                etag: row.get(2)?,
                modified_ms: row.get(3)?,
            })
        },
        |row| &row.key,
        |_| None,
    )
}

/// Up to `max` versions and delete markers of `bucket` under `prefix`, in
/// key order and newest first within a key, after `after`, rolled up at
/// `delimiter` as [`entries`] does.
pub(crate) fn versions(
    conn: &Connection,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: &After<'_>,
    max: usize,
) -> Result<(Vec<Entry<VersionRow>>, bool)> {
    walk(
        conn,
        "SELECT key, version, latest, marker, seq, size, etag, modified_ms FROM objects
         WHERE bucket = ?1 AND key >= ?2
           AND (key > CAST(?3 AS TEXT) OR (key = CAST(?3 AS TEXT) AND seq < ?5))
         ORDER BY key, seq DESC LIMIT ?4",
        bucket,
        prefix,
        delimiter,
        after,
        max,
        |row| {
            Ok(VersionRow {
                key: row.get(0)?,
                version: row.get(1)?,
                latest: row.get(2)?,
                marker: row.get(3)?,
                seq: row.get(4)?,
                size: u64::try_from(row.get::<_, i64>(5)?).unwrap_or(0),
                etag: row.get(6)?,
                modified_ms: row.get(7)?,
            })
        },
        |row| &row.key,
        |row| Some(row.seq),
    )
}

/// The seq of `bucket/key`'s version `version`, to resume a listing after.
pub(crate) fn seq_of(
    conn: &Connection,
    bucket: &str,
    key: &str,
    version: &str,
) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT seq FROM objects WHERE bucket = ?1 AND key = ?2 AND version = ?3",
            params![bucket, key, version],
            |row| row.get(0),
        )
        .optional()?)
}
