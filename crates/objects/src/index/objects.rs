//! Object rows: metadata, and small bodies inline.

use super::buckets;
use crate::error::Result;
use crate::record::{Body, ObjectMeta, ObjectRecord};
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};
use s3s::s3_error;

fn meta_json(meta: &ObjectMeta) -> Result<String> {
    Ok(serde_json::to_string(meta)?)
}

pub(crate) fn read(conn: &Connection, bucket: &str, key: &str) -> Result<Option<ObjectRecord>> {
    let row = conn
        .query_row(
            "SELECT size, etag, modified_ms, meta, file, inline FROM objects WHERE bucket = ?1 AND key = ?2",
            params![bucket, key],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, Option<Vec<u8>>>(5)?,
                ))
            },
        )
        .optional()?;
    let Some((size, etag, modified_ms, meta, file, inline)) = row else {
        return Ok(None);
    };
    let body = match (file, inline) {
        (Some(id), _) => Body::File(id),
        (None, inline) => Body::Inline(Bytes::from(inline.unwrap_or_default())),
    };
    Ok(Some(ObjectRecord {
        key: key.to_string(),
        size: u64::try_from(size).unwrap_or(0),
        etag,
        modified_ms,
        meta: serde_json::from_str(&meta)?,
        body,
    }))
}

/// Writes `record` into `bucket`, returning the file of the object it
/// replaced (to be removed once the write is durable).
pub(crate) fn write(
    conn: &Connection,
    bucket: &str,
    record: &ObjectRecord,
) -> Result<Option<String>> {
    if !buckets::exists(conn, bucket)? {
        return Err(s3_error!(NoSuchBucket).into());
    }
    let old: Option<Option<String>> = conn
        .query_row(
            "SELECT file FROM objects WHERE bucket = ?1 AND key = ?2",
            params![bucket, record.key],
            |row| row.get(0),
        )
        .optional()?;
    let (file, inline) = match &record.body {
        Body::File(id) => (Some(id.as_str()), None),
        Body::Inline(bytes) => (None, Some(bytes.as_ref())),
    };
    conn.execute(
        "INSERT OR REPLACE INTO objects (bucket, key, size, etag, modified_ms, meta, file, inline)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            bucket,
            record.key,
            i64::try_from(record.size).unwrap_or(i64::MAX),
            record.etag,
            record.modified_ms,
            meta_json(&record.meta)?,
            file,
            inline
        ],
    )?;
    Ok(old.flatten().filter(|old| Some(old.as_str()) != file))
}

/// Deletes one object's row, returning its body file.
pub(crate) fn delete(conn: &Connection, bucket: &str, key: &str) -> Result<Option<String>> {
    let file: Option<Option<String>> = conn
        .query_row(
            "DELETE FROM objects WHERE bucket = ?1 AND key = ?2 RETURNING file",
            params![bucket, key],
            |row| row.get(0),
        )
        .optional()?;
    Ok(file.flatten())
}
