//! Object rows: every version of every key (metadata, small bodies inline,
//! delete markers), and which one is the key's latest.
//!
//! The rules of S3 versioning live here, in the one transaction of each
//! write: a bucket whose versioning was never enabled keeps one version
//! per key (`null`), replaced by each write; an enabled bucket keeps every
//! version and a delete adds a marker; a suspended bucket keeps the
//! versions it has, and writes and deletes replace the `null` version.

use super::buckets;
use crate::error::Result;
use crate::record::{
    Body, DeleteMarker, ObjectMeta, ObjectRecord, PartInfo, Version, Versioning, NULL_VERSION,
};
use crate::store::{now_ms, random_id};
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, Row};
use s3s::s3_error;

const COLUMNS: &str = "key, version, marker, size, etag, modified_ms, meta, file, inline";

fn meta_json(meta: &ObjectMeta) -> Result<String> {
    Ok(serde_json::to_string(meta)?)
}

/// The columns of [`COLUMNS`], not yet decoded.
struct RawRow {
    key: String,
    version: String,
    marker: bool,
    size: i64,
    etag: String,
    modified_ms: i64,
    meta: String,
    file: Option<String>,
    inline: Option<Vec<u8>>,
}

fn raw(row: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        key: row.get(0)?,
        version: row.get(1)?,
        marker: row.get(2)?,
        size: row.get(3)?,
        etag: row.get(4)?,
        modified_ms: row.get(5)?,
        meta: row.get(6)?,
        file: row.get(7)?,
        inline: row.get(8)?,
    })
}

fn decode(row: RawRow) -> Result<Version> {
    if row.marker {
        return Ok(Version::Marker(DeleteMarker {
            version: row.version,
            modified_ms: row.modified_ms,
        }));
    }
    let body = match (row.file, row.inline) {
        (Some(id), _) => Body::File(id),
        (None, inline) => Body::Inline(Bytes::from(inline.unwrap_or_default())),
    };
    Ok(Version::Object(Box::new(ObjectRecord {
        key: row.key,
        version: row.version,
        size: u64::try_from(row.size).unwrap_or(0),
        etag: row.etag,
        modified_ms: row.modified_ms,
        meta: serde_json::from_str(&row.meta)?,
        body,
    })))
}

/// The version `version` of `bucket/key`, or the latest one when `None`.
pub(crate) fn get(
    conn: &Connection,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Result<Option<Version>> {
    let row = match version {
        None => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM objects WHERE bucket = ?1 AND key = ?2 AND latest = 1"
            ))?
            .query_row(params![bucket, key], raw)
            .optional()?,
        Some(version) => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM objects WHERE bucket = ?1 AND key = ?2 AND version = ?3"
            ))?
            .query_row(params![bucket, key, version], raw)
            .optional()?,
    };
    row.map(decode).transpose()
}

/// The current object of `bucket/key`: its latest version, unless that is
/// a delete marker.
pub(crate) fn read(conn: &Connection, bucket: &str, key: &str) -> Result<Option<ObjectRecord>> {
    Ok(match get(conn, bucket, key, None)? {
        Some(Version::Object(record)) => Some(*record),
        _ => None,
    })
}

/// The parts of the multipart object at `version` (latest when `None`).
pub(crate) fn parts(
    conn: &Connection,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Result<Option<Vec<PartInfo>>> {
    let parts: Option<Option<String>> = match version {
        None => conn
            .query_row(
                "SELECT parts FROM objects WHERE bucket = ?1 AND key = ?2 AND latest = 1",
                params![bucket, key],
                |row| row.get(0),
            )
            .optional()?,
        Some(version) => conn
            .query_row(
                "SELECT parts FROM objects WHERE bucket = ?1 AND key = ?2 AND version = ?3",
                params![bucket, key, version],
                |row| row.get(0),
            )
            .optional()?,
    };
    parts
        .flatten()
        .map(|p| serde_json::from_str(&p).map_err(Into::into))
        .transpose()
}

/// What a write did: the version it made, and the body files it unlinked
/// from the index (to remove once the write is durable).
pub(crate) struct Written {
    pub version: String,
    pub replaced: Vec<String>,
}

/// Makes the key's latest version no longer latest.
fn demote_latest(conn: &Connection, bucket: &str, key: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE objects SET latest = 0 WHERE bucket = ?1 AND key = ?2 AND latest = 1",
    )?
    .execute(params![bucket, key])?;
    Ok(())
}

/// Removes the key's `null` version, returning its body file.
fn remove_null_version(conn: &Connection, bucket: &str, key: &str) -> Result<Vec<String>> {
    let file: Option<Option<String>> = conn
        .prepare_cached(
            "DELETE FROM objects WHERE bucket = ?1 AND key = ?2 AND version = 'null' RETURNING file",
        )?
        .query_row(params![bucket, key], |row| row.get(0))
        .optional()?;
    Ok(file.flatten().into_iter().collect())
}

/// The seq the key's next version gets (newer than every one it has).
fn next_seq(conn: &Connection, bucket: &str, key: &str) -> Result<i64> {
    let newest: Option<i64> = conn
        .prepare_cached(
            "SELECT seq FROM objects WHERE bucket = ?1 AND key = ?2 ORDER BY seq DESC LIMIT 1",
        )?
        .query_row(params![bucket, key], |row| row.get(0))
        .optional()?;
    Ok(newest.map_or(0, |seq| seq + 1))
}

/// A new version id for a version with `seq`: the seq in 16 hex digits,
/// then 32 random ones. A listing resumes after a version id whose version
/// is gone (deleted between two pages) by the seq it carries.
fn version_id(seq: i64) -> String {
    format!("{:016x}{}", seq as u64, random_id())
}

/// The seq a version id from [`version_id`] carries (`None` for `null`
/// and for ids written before version ids carried one).
pub(crate) fn seq_in_version_id(version: &str) -> Option<i64> {
    (version.len() == 48 && version.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(&version[..16], 16).ok())
        .flatten()
        .and_then(|seq| i64::try_from(seq).ok())
}

/// Whether `version` has the form of a version id this store hands out:
/// `null`, 32 hex digits (ids from before they carried a seq) or
/// [`version_id`]'s 48.
pub(crate) fn is_version_id(version: &str) -> bool {
    version == NULL_VERSION
        || (matches!(version.len(), 32 | 48) && version.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Makes room for a new latest version of `key` as `versioning` says:
/// its version id, the seq it gets, and the files the `null` version it
/// replaces (if any) leaves behind.
fn new_version(
    conn: &Connection,
    bucket: &str,
    key: &str,
    versioning: Versioning,
) -> Result<(String, i64, Vec<String>)> {
    match versioning {
        // Never versioned: the key's only version is replaced.
        Versioning::Unversioned => {
            let replaced = remove_null_version(conn, bucket, key)?;
            Ok((NULL_VERSION.to_string(), 0, replaced))
        }
        Versioning::Enabled => {
            demote_latest(conn, bucket, key)?;
            let seq = next_seq(conn, bucket, key)?;
            Ok((version_id(seq), seq, Vec::new()))
        }
        Versioning::Suspended => {
            let replaced = remove_null_version(conn, bucket, key)?;
            demote_latest(conn, bucket, key)?;
            Ok((
                NULL_VERSION.to_string(),
                next_seq(conn, bucket, key)?,
                replaced,
            ))
        }
    }
}

/// Writes `record` as the new latest version of its key in `bucket`,
/// setting its version id as the bucket's versioning state says.
pub(crate) fn write(
    conn: &Connection,
    bucket: &str,
    record: &mut ObjectRecord,
    parts: Option<&[PartInfo]>,
) -> Result<Written> {
    let versioning = buckets::versioning(conn, bucket)?;
    let (version, seq, replaced) = new_version(conn, bucket, &record.key, versioning)?;
    record.version = version.clone();
    let (file, inline) = match &record.body {
        Body::File(id) => (Some(id.as_str()), None),
        Body::Inline(bytes) => (None, Some(bytes.as_ref())),
    };
    let parts = parts.map(serde_json::to_string).transpose()?;
    conn.prepare_cached(
        "INSERT INTO objects (bucket, key, seq, version, latest, marker, size, etag, modified_ms, meta, file, inline, parts)
         VALUES (?1, ?2, ?3, ?4, 1, 0, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        bucket,
        record.key,
        seq,
        version,
        i64::try_from(record.size).unwrap_or(i64::MAX),
        record.etag,
        record.modified_ms,
        meta_json(&record.meta)?,
        file,
        inline,
        parts,
    ])?;
    Ok(Written {
        version,
        replaced: replaced
            .into_iter()
            .filter(|old| Some(old.as_str()) != file)
            .collect(),
    })
}

/// What a delete did.
#[derive(Debug, Default)]
pub(crate) struct Deleted {
    /// The version it removed or, for a delete that adds one, the delete
    /// marker's version.
    pub version: Option<String>,
    /// Whether that version is a delete marker.
    pub marker: bool,
    /// Body files no row names any more.
    pub files: Vec<String>,
}

/// Deletes `bucket/key`: its version `version`, or (when `None`) the key
/// as the bucket's versioning state says, which adds a delete marker to a
/// versioned bucket. Deleting what does not exist changes nothing.
pub(crate) fn delete(
    conn: &Connection,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Result<Deleted> {
    let versioning = buckets::versioning(conn, bucket)?;
    if let Some(version) = version {
        return delete_version(conn, bucket, key, version);
    }
    if versioning == Versioning::Unversioned {
        return Ok(Deleted {
            files: remove_null_version(conn, bucket, key)?,
            ..Deleted::default()
        });
    }
    let (version, seq, files) = new_version(conn, bucket, key, versioning)?;
    conn.prepare_cached(
        "INSERT INTO objects (bucket, key, seq, version, latest, marker, size, etag, modified_ms, meta)
         VALUES (?1, ?2, ?3, ?4, 1, 1, 0, '', ?5, '{}')",
    )?
    .execute(params![bucket, key, seq, version, now_ms()])?;
    Ok(Deleted {
        version: Some(version),
        marker: true,
        files,
    })
}

/// Removes one version; when it was the latest, the newest remaining
/// version becomes the latest.
fn delete_version(conn: &Connection, bucket: &str, key: &str, version: &str) -> Result<Deleted> {
    let removed: Option<(bool, bool, Option<String>)> = conn
        .prepare_cached(
            "DELETE FROM objects WHERE bucket = ?1 AND key = ?2 AND version = ?3 RETURNING latest, marker, file",
        )?
        .query_row(params![bucket, key, version], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let Some((latest, marker, file)) = removed else {
        return Ok(Deleted {
            version: Some(version.to_string()),
            ..Deleted::default()
        });
    };
    if latest {
        conn.prepare_cached(
            "UPDATE objects SET latest = 1 WHERE bucket = ?1 AND key = ?2 AND seq =
             (SELECT seq FROM objects WHERE bucket = ?1 AND key = ?2 ORDER BY seq DESC LIMIT 1)",
        )?
        .execute(params![bucket, key])?;
    }
    Ok(Deleted {
        version: Some(version.to_string()),
        marker,
        files: file.into_iter().collect(),
    })
}

/// Changes the metadata of an object version (tags, ACL) in place: the
/// body, ETag and modification time stay. Returns the version changed.
pub(crate) fn update_meta(
    conn: &Connection,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    change: impl FnOnce(&mut ObjectMeta) -> Result<()>,
) -> Result<String> {
    if !buckets::exists(conn, bucket)? {
        return Err(s3_error!(NoSuchBucket).into());
    }
    let mut record = match get(conn, bucket, key, version)? {
        Some(Version::Object(record)) => *record,
        Some(Version::Marker(_)) if version.is_some() => {
            return Err(s3_error!(MethodNotAllowed, "the version is a delete marker").into())
        }
        Some(Version::Marker(_)) => return Err(s3_error!(NoSuchKey).into()),
        None if version.is_some() => return Err(s3_error!(NoSuchVersion).into()),
        None => return Err(s3_error!(NoSuchKey).into()),
    };
    change(&mut record.meta)?;
    conn.prepare_cached(
        "UPDATE objects SET meta = ?1 WHERE bucket = ?2 AND key = ?3 AND version = ?4",
    )?
    .execute(params![
        meta_json(&record.meta)?,
        bucket,
        key,
        record.version
    ])?;
    Ok(record.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_id_gives_back_its_seq() {
        for seq in [0, 1, 41, i64::MAX] {
            let id = version_id(seq);
            assert!(is_version_id(&id), "{id}");
            assert_eq!(seq_in_version_id(&id), Some(seq), "{id}");
        }
        assert!(version_id(3) != version_id(3), "ids are unique");
    }

    #[test]
    fn null_and_older_ids_carry_no_seq() {
        let older = random_id();
        for id in [NULL_VERSION, older.as_str()] {
            assert!(is_version_id(id), "{id}");
            assert_eq!(seq_in_version_id(id), None, "{id}");
        }
        for bogus in [
            "",
            "abc",
            "zz00000000000000000000000000000000000000000000000",
        ] {
            assert!(!is_version_id(bogus), "{bogus}");
        }
    }
}
