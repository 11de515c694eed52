//! An index written by roost before object versions (schema 0) is migrated
//! forward at open: every bucket, object and unfinished upload is kept, the
//! objects become version `null` of their keys, and versioning then works
//! on them.

mod common;

use bytes::Bytes;
use common::{md5_hex, pattern, Harness, Req};
use http::Method;
use std::path::Path;

/// The tables as roost created them before schema versions existed.
const SCHEMA_0: &str = "
CREATE TABLE buckets (
    name TEXT PRIMARY KEY,
    owner TEXT,
    created_ms INTEGER NOT NULL
);
CREATE TABLE objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    modified_ms INTEGER NOT NULL,
    meta TEXT NOT NULL,
    file TEXT,
    inline BLOB,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    initiated_ms INTEGER NOT NULL,
    meta TEXT NOT NULL
);
CREATE INDEX uploads_by_key ON uploads(bucket, key, id);
CREATE TABLE parts (
    upload TEXT NOT NULL,
    number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    modified_ms INTEGER NOT NULL,
    checksums TEXT NOT NULL,
    file TEXT NOT NULL,
    PRIMARY KEY (upload, number)
) WITHOUT ROWID;
";

const BUCKET: &str = "old";
const BIG_FILE: &str = "ab00000000000000000000000000000001";
const PART_FILE: &str = "cd00000000000000000000000000000002";
const UPLOAD: &str = "0123456789abcdef0123456789abcdef";
const MIB: usize = 1024 * 1024;

fn big() -> Bytes {
    pattern(1, 300 * 1024)
}
fn part() -> Bytes {
    pattern(2, 5 * MIB)
}

fn write_body(root: &Path, id: &str, body: &[u8]) {
    let dir = root.join("data").join(&id[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(id), body).unwrap();
}

/// A store as roost wrote it at schema 0: an owned bucket with an inline
/// object, a file-backed one and a multipart one, and an unfinished upload
/// with one part.
fn write_schema_0(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    write_body(root, BIG_FILE, &big());
    write_body(root, PART_FILE, &part());
    let conn = rusqlite::Connection::open(root.join("index.db")).unwrap();
    conn.execute_batch(SCHEMA_0).unwrap();
    conn.execute(
        "INSERT INTO buckets (name, owner, created_ms) VALUES (?1, 'robot', 1700000000000)",
        [BUCKET],
    )
    .unwrap();
    let object = |key: &str,
                  size: usize,
                  etag: &str,
                  meta: &str,
                  file: Option<&str>,
                  inline: Option<&[u8]>| {
        conn.execute(
            "INSERT INTO objects (bucket, key, size, etag, modified_ms, meta, file, inline)
             VALUES (?1, ?2, ?3, ?4, 1700000000000, ?5, ?6, ?7)",
            rusqlite::params![BUCKET, key, size as i64, etag, meta, file, inline],
        )
        .unwrap();
    };
    object(
        "small",
        11,
        &md5_hex(b"small body!"),
        r#"{"content_type":"text/plain","user":{"origin":"v0"},"checksums":{}}"#,
        None,
        Some(b"small body!"),
    );
    object(
        "big",
        big().len(),
        &md5_hex(&big()),
        r#"{"checksums":{}}"#,
        Some(BIG_FILE),
        None,
    );
    object(
        "assembled",
        big().len(),
        "00112233445566778899aabbccddeeff-2",
        r#"{"checksums":{},"parts":2}"#,
        Some(BIG_FILE),
        None,
    );
    conn.execute(
        "INSERT INTO uploads (id, bucket, key, initiated_ms, meta)
         VALUES (?1, ?2, 'pending', 1700000000000, '{\"content_type\":\"application/x-pending\",\"checksums\":{}}')",
        [UPLOAD, BUCKET],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO parts (upload, number, size, etag, modified_ms, checksums, file)
         VALUES (?1, 1, ?2, ?3, 1700000000000, '{}', ?4)",
        rusqlite::params![UPLOAD, part().len() as i64, md5_hex(&part()), PART_FILE],
    )
    .unwrap();
}

fn schema_version(root: &Path) -> i64 {
    let conn = rusqlite::Connection::open(root.join("index.db")).unwrap();
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_0_index_keeps_every_object_and_upload() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    write_schema_0(&root);
    assert_eq!(schema_version(&root), 0);

    let h = Harness::open(&root, None, &[]);
    assert_eq!(schema_version(&root), 1);
    // The objects read as they were, with their headers, as version `null`.
    let small = h.ok(Req::get(BUCKET, "small")).await;
    assert_eq!(&small.body[..], b"small body!");
    assert_eq!(small.header("content-type").as_deref(), Some("text/plain"));
    assert_eq!(small.header("x-amz-meta-origin").as_deref(), Some("v0"));
    assert_eq!(small.header("x-amz-version-id"), None);
    assert_eq!(h.get(BUCKET, "big").await, Some(big()));
    let by_null = h
        .ok(Req::get(BUCKET, "big").query("versionId", "null"))
        .await;
    assert_eq!(by_null.body, big());
    let listed = h.ok(Req::bucket(Method::GET, BUCKET)).await;
    assert_eq!(listed.tags("Key"), ["assembled", "big", "small"]);
    let versions = h
        .ok(Req::bucket(Method::GET, BUCKET).query("versions", ""))
        .await;
    assert_eq!(versions.tags("Key"), ["assembled", "big", "small"]);
    assert_eq!(versions.tags("VersionId"), ["null", "null", "null"]);
    assert_eq!(versions.tags("IsLatest"), ["true", "true", "true"]);
    // The bucket keeps its owner: an app's bucket stays that app's.
    let bucket = h.store.bucket(BUCKET).await.unwrap().expect("the bucket");
    assert_eq!(bucket.owner.as_deref(), Some("robot"));
    // A multipart object from before the part layout was kept has no
    // parts to serve one by one, and says so.
    let part_of_old = h
        .send(
            Some(&h.admin.clone()),
            Req::get(BUCKET, "assembled").query("partNumber", "1"),
        )
        .await;
    part_of_old.expect_error(501, "NotImplemented");

    // The unfinished upload completes with its stored part and headers.
    let done = h
        .ok(Req::new(Method::POST, Some(BUCKET), Some("pending"))
            .query("uploadId", UPLOAD)
            .body(format!(
                "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"{}\"</ETag></Part></CompleteMultipartUpload>",
                md5_hex(&part())
            )))
        .await;
    assert!(done.tags("ETag")[0].ends_with("-1\""), "{}", done.text());
    let pending = h.ok(Req::get(BUCKET, "pending")).await;
    assert_eq!(pending.body, part());
    assert_eq!(
        pending.header("content-type").as_deref(),
        Some("application/x-pending")
    );

    // Versioning works on the migrated keys: the old object stays as `null`.
    h.ok(Req::bucket(Method::PUT, BUCKET)
        .query("versioning", "")
        .body("<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"))
        .await;
    let put = h.ok(Req::put(BUCKET, "big", "new big")).await;
    let version = put.header("x-amz-version-id").expect("a version id");
    assert_eq!(h.get(BUCKET, "big").await.as_deref(), Some(&b"new big"[..]));
    let old = h
        .ok(Req::get(BUCKET, "big").query("versionId", "null"))
        .await;
    assert_eq!(old.body, big());
    let versions = h
        .ok(Req::bucket(Method::GET, BUCKET)
            .query("versions", "")
            .query("prefix", "big"))
        .await;
    assert_eq!(versions.tags("VersionId"), [version.as_str(), "null"]);
    drop(h);

    // Opening again leaves the migrated index as it is.
    let h = Harness::open(&root, None, &[]);
    assert_eq!(schema_version(&root), 1);
    assert_eq!(
        h.get(BUCKET, "small").await.as_deref(),
        Some(&b"small body!"[..])
    );
    assert_eq!(h.get(BUCKET, "pending").await, Some(part()));
}

#[test]
fn an_index_from_a_newer_roost_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    drop(roost_objects::ObjectStore::open(&root).unwrap());
    let conn = rusqlite::Connection::open(root.join("index.db")).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    let err = roost_objects::ObjectStore::open(&root)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("newer"), "{err}");
}
