//! Bucket rows.

use crate::error::{Error, Result};
use crate::record::BucketInfo;
use rusqlite::{params, Connection, OptionalExtension};

pub(crate) fn exists(conn: &Connection, bucket: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM buckets WHERE name = ?1",
            [bucket],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Records a new bucket; refuses a name already taken.
pub(crate) fn create(conn: &Connection, record: &BucketInfo) -> Result<()> {
    if exists(conn, &record.name)? {
        return Err(Error::BucketExists(record.name.clone()));
    }
    conn.execute(
        "INSERT INTO buckets (name, owner, created_ms) VALUES (?1, ?2, ?3)",
        params![record.name, record.owner, record.created_ms],
    )?;
    Ok(())
}

/// Removes a bucket with its uploads (and, with `purge`, its objects; a
/// bucket with objects is refused without it). Returns the body files no
/// row names any more.
pub(crate) fn delete(conn: &Connection, bucket: &str, purge: bool) -> Result<Vec<String>> {
    if !exists(conn, bucket)? {
        return Err(Error::NoSuchBucket(bucket.to_string()));
    }
    let has_objects = conn
        .query_row(
            "SELECT 1 FROM objects WHERE bucket = ?1 LIMIT 1",
            [bucket],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if has_objects && !purge {
        return Err(Error::BucketNotEmpty(bucket.to_string()));
    }
    let mut files: Vec<String> = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT file FROM objects WHERE bucket = ?1 AND file IS NOT NULL
             UNION ALL
             SELECT p.file FROM parts p JOIN uploads u ON p.upload = u.id WHERE u.bucket = ?1",
        )?;
        for id in stmt.query_map([bucket], |row| row.get::<_, String>(0))? {
            files.push(id?);
        }
    }
    conn.execute(
        "DELETE FROM parts WHERE upload IN (SELECT id FROM uploads WHERE bucket = ?1)",
        [bucket],
    )?;
    conn.execute("DELETE FROM uploads WHERE bucket = ?1", [bucket])?;
    conn.execute("DELETE FROM objects WHERE bucket = ?1", [bucket])?;
    conn.execute("DELETE FROM buckets WHERE name = ?1", [bucket])?;
    Ok(files)
}

/// Every bucket, by name.
pub(crate) fn list(conn: &Connection) -> Result<Vec<BucketInfo>> {
    let mut stmt = conn.prepare("SELECT name, owner, created_ms FROM buckets ORDER BY name")?;
    let rows = stmt.query_map([], |row| {
        Ok(BucketInfo {
            name: row.get(0)?,
            owner: row.get(1)?,
            created_ms: row.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Names of the buckets `owner` owns, oldest first.
pub(crate) fn names_of(conn: &Connection, owner: &str) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT name FROM buckets WHERE owner = ?1 ORDER BY created_ms, name")?;
    let names = stmt.query_map([owner], |row| row.get::<_, String>(0))?;
    Ok(names.collect::<Result<Vec<_>, _>>()?)
}

pub(crate) fn get(conn: &Connection, name: &str) -> Result<Option<BucketInfo>> {
    Ok(conn
        .query_row(
            "SELECT name, owner, created_ms FROM buckets WHERE name = ?1",
            [name],
            |row| {
                Ok(BucketInfo {
                    name: row.get(0)?,
                    owner: row.get(1)?,
                    created_ms: row.get(2)?,
                })
            },
        )
        .optional()?)
}
