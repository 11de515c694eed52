//! Multipart uploads and their parts.

use super::buckets;
use crate::error::Result;
use crate::record::{Checksums, Completion, UploadMeta};
use rusqlite::{params, Connection, OptionalExtension};
use s3s::s3_error;

/// How long a completed upload's answer is kept for a repeated completion.
const COMPLETED_RETENTION_MS: i64 = 60 * 60 * 1000;

/// A part as the index records it.
pub(crate) struct PartRow {
    pub number: i32,
    pub size: u64,
    pub etag: String,
    pub modified_ms: i64,
    pub checksums: Checksums,
    pub file: String,
}

/// Records a new upload of `bucket/key` with the object's headers.
pub(crate) fn create(
    conn: &Connection,
    upload: &str,
    bucket: &str,
    key: &str,
    initiated_ms: i64,
    meta: &str,
) -> Result<()> {
    if !buckets::exists(conn, bucket)? {
        return Err(s3_error!(NoSuchBucket).into());
    }
    conn.execute(
        "INSERT INTO uploads (id, bucket, key, initiated_ms, meta) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![upload, bucket, key, initiated_ms, meta],
    )?;
    Ok(())
}

pub(crate) fn parts(conn: &Connection, upload: &str) -> Result<Vec<PartRow>> {
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

/// An open upload's record: (bucket, key, meta).
pub(crate) fn read(conn: &Connection, id: &str) -> Result<Option<(String, String, UploadMeta)>> {
    let row = conn
        .query_row(
            "SELECT bucket, key, meta FROM uploads WHERE id = ?1 AND completed IS NULL",
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

/// The headers of `found` if it is an upload of `bucket/key`; NoSuchUpload
/// otherwise.
pub(crate) fn upload_of(
    found: Option<(String, String, UploadMeta)>,
    bucket: &str,
    key: &str,
) -> Result<UploadMeta> {
    match found {
        Some((b, k, meta)) if b == bucket && k == key => Ok(meta),
        _ => Err(s3_error!(NoSuchUpload).into()),
    }
}

/// The answer of a completed upload of `bucket/key`, if it is still kept.
pub(crate) fn completion(
    conn: &Connection,
    id: &str,
    bucket: &str,
    key: &str,
) -> Result<Option<Completion>> {
    let completed: Option<String> = conn
        .query_row(
            "SELECT completed FROM uploads WHERE id = ?1 AND bucket = ?2 AND key = ?3 AND completed IS NOT NULL",
            params![id, bucket, key],
            |row| row.get(0),
        )
        .optional()?;
    completed
        .map(|c| serde_json::from_str(&c).map_err(Into::into))
        .transpose()
}

/// Marks an upload completed with its answer and drops its part rows (not
/// their files); forgets completions older than the retention.
pub(crate) fn complete(
    conn: &Connection,
    upload: &str,
    completion: &Completion,
    now_ms: i64,
) -> Result<()> {
    conn.execute("DELETE FROM parts WHERE upload = ?1", [upload])?;
    conn.execute(
        "UPDATE uploads SET completed = ?1, completed_ms = ?2 WHERE id = ?3",
        params![serde_json::to_string(completion)?, now_ms, upload],
    )?;
    conn.execute(
        "DELETE FROM uploads WHERE completed_ms < ?1",
        [now_ms - COMPLETED_RETENTION_MS],
    )?;
    Ok(())
}

/// Removes an upload and its part rows (not their files).
pub(crate) fn remove(conn: &Connection, upload: &str) -> Result<()> {
    conn.execute("DELETE FROM parts WHERE upload = ?1", [upload])?;
    conn.execute("DELETE FROM uploads WHERE id = ?1", [upload])?;
    Ok(())
}

/// Records part `number` of `upload`, returning the file of the part it
/// replaced.
#[allow(clippy::too_many_arguments)]
pub(crate) fn put_part(
    conn: &Connection,
    upload: &str,
    number: i32,
    size: i64,
    etag: &str,
    modified_ms: i64,
    checksums: &str,
    file: &str,
) -> Result<Option<String>> {
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
        params![upload, number, size, etag, modified_ms, checksums, file],
    )?;
    Ok(old)
}

/// An open upload in a listing.
#[derive(Debug, Clone)]
pub(crate) struct UploadRow {
    pub key: String,
    pub id: String,
    pub initiated_ms: i64,
    pub meta: UploadMeta,
}

/// Up to `max + 1` open uploads of `bucket` under `prefix` after the
/// marker (key, upload id).
pub(crate) fn list(
    conn: &Connection,
    bucket: &str,
    prefix: &str,
    key_marker: &str,
    id_marker: &str,
    max: usize,
) -> Result<Vec<UploadRow>> {
    if !buckets::exists(conn, bucket)? {
        return Err(s3_error!(NoSuchBucket).into());
    }
    let mut stmt = conn.prepare(
        "SELECT key, id, initiated_ms, meta FROM uploads WHERE bucket = ?1 AND key >= ?2
         AND (key > ?3 OR (key = ?3 AND id > ?4)) AND completed IS NULL
         ORDER BY key, id LIMIT ?5",
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
                row.get::<_, String>(3)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (key, id, initiated_ms, meta) = row?;
        if !key.starts_with(prefix) {
            break;
        }
        out.push(UploadRow {
            key,
            id,
            initiated_ms,
            meta: serde_json::from_str(&meta)?,
        });
    }
    Ok(out)
}
