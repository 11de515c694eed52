//! Ordered listing over the index. Keys sort by their UTF-8 bytes (SQLite's
//! BINARY collation is `memcmp`), which is S3's order; a common prefix is
//! skipped in one seek past every key that starts with it.

use crate::error::Result;
use rusqlite::{params, Connection};

/// What a listing row needs (no metadata, no body).
pub(crate) struct Row {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub modified_ms: i64,
}

pub(crate) enum Entry {
    Object(Row),
    Prefix(String),
}

const BATCH: i64 = 1000;

/// Up to `max` entries of `bucket` under `prefix`, after `after` (a key, or
/// a common prefix already returned), rolling keys up to common prefixes at
/// `delimiter`. The flag says whether more entries follow.
pub(crate) fn entries(
    conn: &Connection,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: &str,
    max: usize,
) -> Result<(Vec<Entry>, bool)> {
    let mut stmt = conn.prepare_cached(
        "SELECT key, size, etag, modified_ms FROM objects
         WHERE bucket = ?1 AND key >= ?2 AND key > CAST(?3 AS TEXT)
         ORDER BY key LIMIT ?4",
    )?;
    let mut out = Vec::new();
    let mut cursor: Vec<u8> = after.as_bytes().to_vec();
    loop {
        let rows = stmt.query_map(params![bucket, prefix, cursor, BATCH], |row| {
            Ok(Row {
                key: row.get(0)?,
                size: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                etag: row.get(2)?,
                modified_ms: row.get(3)?,
            })
        })?;
        let mut seen = 0;
        let mut seek: Option<Vec<u8>> = None;
        for row in rows {
            let row = row?;
            seen += 1;
            if !row.key.starts_with(prefix) {
                return Ok((out, false));
            }
            let rolled = delimiter.and_then(|d| {
                row.key[prefix.len()..]
                    .find(d)
                    .map(|pos| row.key[..prefix.len() + pos + d.len()].to_string())
            });
            if let Some(common) = rolled {
                // Every key starting with `common` sorts before this bound
                // (0xFF never occurs in UTF-8).
                let mut bound = common.as_bytes().to_vec();
                bound.push(0xFF);
                if common.as_str() > after {
                    if out.len() == max {
                        return Ok((out, true));
                    }
                    out.push(Entry::Prefix(common));
                }
                seek = Some(bound);
                break;
            }
            if out.len() == max {
                return Ok((out, true));
            }
            cursor = row.key.as_bytes().to_vec();
            out.push(Entry::Object(row));
        }
        match seek {
            Some(bound) => cursor = bound,
            None if seen < BATCH => return Ok((out, false)),
            None => {}
        }
    }
}
