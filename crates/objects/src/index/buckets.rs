//! Bucket rows.

use crate::error::{Error, Result};
use crate::record::{BucketConfig, BucketInfo, CannedAcl, Versioning};
use rusqlite::{params, Connection, OptionalExtension};
use s3s::s3_error;

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

/// Records a new bucket with `acl`; refuses a name already taken.
pub(crate) fn create(conn: &Connection, record: &BucketInfo, acl: CannedAcl) -> Result<()> {
    if exists(conn, &record.name)? {
        return Err(Error::BucketExists(record.name.clone()));
    }
    conn.execute(
        "INSERT INTO buckets (name, owner, created_ms, acl) VALUES (?1, ?2, ?3, ?4)",
        params![
            record.name,
            record.owner,
            record.created_ms,
            (!acl.is_private()).then_some(acl.as_str())
        ],
    )?;
    Ok(())
}

/// A bucket's configuration, if it exists.
pub(crate) fn config(conn: &Connection, name: &str) -> Result<Option<BucketConfig>> {
    let row = conn
        .query_row(
            "SELECT owner, versioning, acl, cors, tags FROM buckets WHERE name = ?1",
            [name],
            |row| {
                Ok((
                    row.get::<_, Option<String>>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, Option<String>>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((owner, versioning, acl, cors, tags)) = row else {
        return Ok(None);
    };
    Ok(Some(BucketConfig {
        owner,
        versioning: Versioning::from_column(versioning.as_deref()),
        acl: acl
            .as_deref()
            .and_then(CannedAcl::parse)
            .unwrap_or_default(),
        cors: cors.map(|c| serde_json::from_str(&c)).transpose()?,
        tags: tags.map(|t| serde_json::from_str(&t)).transpose()?,
    }))
}

/// The versioning state of `bucket`, which must exist (NoSuchBucket).
pub(crate) fn versioning(conn: &Connection, bucket: &str) -> Result<Versioning> {
    let state: Option<Option<String>> = conn
        .query_row(
            "SELECT versioning FROM buckets WHERE name = ?1",
            [bucket],
            |row| row.get(0),
        )
        .optional()?;
    match state {
        Some(state) => Ok(Versioning::from_column(state.as_deref())),
        None => Err(s3_error!(NoSuchBucket).into()),
    }
}

/// A bucket setting that PutBucket* operations replace as a whole.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Setting {
    Versioning,
    Acl,
    Cors,
    Tags,
}

impl Setting {
    fn column(self) -> &'static str {
        match self {
            Setting::Versioning => "versioning",
            Setting::Acl => "acl",
            Setting::Cors => "cors",
            Setting::Tags => "tags",
        }
    }
}

/// Sets (`Some`) or clears (`None`) `setting` of `bucket`, which must exist.
pub(crate) fn set(
    conn: &Connection,
    bucket: &str,
    setting: Setting,
    value: Option<&str>,
) -> Result<()> {
    let changed = conn.execute(
        &format!(
            "UPDATE buckets SET {} = ?1 WHERE name = ?2",
            setting.column()
        ),
        params![value, bucket],
    )?;
    if changed == 0 {
        return Err(s3_error!(NoSuchBucket).into());
    }
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
