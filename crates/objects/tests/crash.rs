//! A crash at any moment of a write leaves the old or the new object, never
//! a torn one, and the next open cleans what the crash left.
//!
//! Each case seeds a store, then runs one write in a child process (this
//! test binary, running `crash_child`) whose store kills the process with
//! SIGKILL at a crash point (`ObjectStore::open_crashing_at`), or whose
//! request body kills it halfway through. The parent checks that the child
//! really died there, then reopens the store and checks: the object is
//! exactly the old or exactly the new one, as the point implies; `tmp/` is
//! empty; the body files are exactly those the index names, each of its
//! record's size; every body matches its record's ETag.

mod common;

use bytes::Bytes;
use common::{md5_hex, pattern, tags, Harness, Req};
use http::Method;
use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

const BUCKET: &str = "crash";
/// A bucket with versioning enabled, holding one version of `v`.
const VERSIONED: &str = "crash-versioned";
const MIB: usize = 1024 * 1024;

fn old_big() -> Bytes {
    pattern(1, 3 * MIB)
}
fn new_big() -> Bytes {
    pattern(2, 3 * MIB)
}
fn part(n: u64) -> Bytes {
    pattern(10 + n, if n == 1 { 5 * MIB } else { MIB })
}
/// Part 1 uploaded again, with other content.
fn part_again() -> Bytes {
    pattern(20, 5 * MIB)
}
fn old_version() -> Bytes {
    pattern(4, 2 * MIB)
}
fn new_version() -> Bytes {
    pattern(5, 2 * MIB)
}

/// What the bucket holds, key by key.
#[derive(Debug, PartialEq)]
struct State {
    big: Option<Bytes>,
    small: Option<Bytes>,
    gone: Option<Bytes>,
    copy: Option<Bytes>,
    mp: Option<Bytes>,
    /// The tag keys of `small`.
    small_tags: Vec<String>,
    /// The history of `v` in [`VERSIONED`], newest first: each version's
    /// body, `None` for a delete marker.
    versions: Vec<Option<Bytes>>,
}

impl State {
    fn seeded() -> State {
        State {
            big: Some(old_big()),
            small: Some(Bytes::from_static(b"old small")),
            gone: Some(pattern(3, 200 * 1024)),
            copy: None,
            mp: None,
            small_tags: Vec::new(),
            versions: vec![Some(old_version())],
        }
    }

    async fn read(h: &Harness) -> State {
        State {
            big: h.get(BUCKET, "big").await,
            small: h.get(BUCKET, "small").await,
            gone: h.get(BUCKET, "gone").await,
            copy: h.get(BUCKET, "copy").await,
            mp: h.get(BUCKET, "mp").await,
            small_tags: h
                .ok(Req::new(Method::GET, Some(BUCKET), Some("small")).query("tagging", ""))
                .await
                .tags("Key"),
            versions: read_versions(h).await,
        }
    }
}

/// The versions of `v` in [`VERSIONED`], newest first, as ListObjectVersions
/// lists them: `(version id, whether it is a delete marker)`.
async fn versions_listed(h: &Harness) -> Vec<(String, bool)> {
    let listing = h
        .ok(Req::bucket(Method::GET, VERSIONED).query("versions", ""))
        .await
        .text();
    let mut out = Vec::new();
    let mut rest = listing.as_str();
    loop {
        let next = [("<Version>", false), ("<DeleteMarker>", true)]
            .into_iter()
            .filter_map(|(open, marker)| Some((rest.find(open)?, open, marker)))
            .min();
        let Some((at, open, marker)) = next else {
            return out;
        };
        rest = &rest[at + open.len()..];
        let id = tags(rest, "VersionId").remove(0);
        out.push((id, marker));
    }
}

async fn read_versions(h: &Harness) -> Vec<Option<Bytes>> {
    let mut out = Vec::new();
    for (id, marker) in versions_listed(h).await {
        if marker {
            out.push(None);
            continue;
        }
        let body = h
            .ok(Req::get(VERSIONED, "v").query("versionId", &id))
            .await
            .body;
        out.push(Some(body));
    }
    out
}

fn completion() -> String {
    let parts: String = (1..=2)
        .map(|n| {
            format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>\"{}\"</ETag></Part>",
                md5_hex(&part(n))
            )
        })
        .collect();
    format!("<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>")
}

fn upload_req(method: Method, upload: &str) -> Req {
    Req::new(method, Some(BUCKET), Some("mp")).query("uploadId", upload)
}

/// What a seeded store holds that the writes name.
struct Seeded {
    /// The unfinished upload of `mp`.
    upload: String,
    /// The one version of `v` in [`VERSIONED`].
    version: String,
}

/// Seeds `root`.
async fn seed(root: &Path) -> Seeded {
    let h = Harness::open(root, None, &[]);
    h.ok(Req::bucket(Method::PUT, BUCKET)).await;
    let seeded = State::seeded();
    h.ok(Req::put(BUCKET, "big", seeded.big.unwrap())).await;
    h.ok(Req::put(BUCKET, "small", seeded.small.unwrap())).await;
    h.ok(Req::put(BUCKET, "gone", seeded.gone.unwrap())).await;
    h.ok(Req::bucket(Method::PUT, VERSIONED)).await;
    h.ok(Req::bucket(Method::PUT, VERSIONED)
        .query("versioning", "")
        .body("<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"))
        .await;
    let version = h
        .ok(Req::put(VERSIONED, "v", old_version()))
        .await
        .header("x-amz-version-id")
        .expect("a version id");
    let upload = h
        .ok(Req::new(Method::POST, Some(BUCKET), Some("mp")).query("uploads", ""))
        .await
        .tags("UploadId")
        .remove(0);
    for n in 1..=2 {
        h.ok(upload_req(Method::PUT, &upload)
            .query("partNumber", &n.to_string())
            .body(part(n)))
            .await;
    }
    Seeded { upload, version }
}

/// The write a case runs in the child.
#[derive(Debug, Clone, Copy)]
enum Write {
    PutBig,
    PutSmall,
    Copy,
    Part,
    /// Part 1 of `mp` uploaded again, with other content.
    PartAgain,
    Complete,
    Delete,
    /// PUT of `big` if its ETag is still the seeded one.
    PutIfMatch,
    /// PutObjectTagging of `small`.
    Tagging,
    /// PUT of a new version of `v` into the versioned bucket.
    PutVersion,
    /// DELETE of `v` in the versioned bucket: a delete marker.
    DeleteMarker,
    /// DELETE of the seeded version of `v` in the versioned bucket.
    DeleteVersion,
    /// PUT of `big` whose body kills the process once part of it is on disk.
    TornBody,
}

impl Write {
    fn from_name(name: &str) -> Write {
        [
            Write::PutBig,
            Write::PutSmall,
            Write::Copy,
            Write::Part,
            Write::PartAgain,
            Write::Complete,
            Write::Delete,
            Write::PutIfMatch,
            Write::Tagging,
            Write::PutVersion,
            Write::DeleteMarker,
            Write::DeleteVersion,
            Write::TornBody,
        ]
        .into_iter()
        .find(|w| format!("{w:?}") == name)
        .unwrap_or_else(|| panic!("unknown write {name}"))
    }

    fn request(self, root: &Path, seeded: &Seeded) -> Req {
        let upload = seeded.upload.as_str();
        match self {
            Write::PutBig => Req::put(BUCKET, "big", new_big()),
            Write::PutSmall => Req::put(BUCKET, "small", "new small"),
            Write::Copy => Req::new(Method::PUT, Some(BUCKET), Some("copy"))
                .header("x-amz-copy-source", &format!("{BUCKET}/big")),
            Write::Part => upload_req(Method::PUT, upload)
                .query("partNumber", "3")
                .body(part(3)),
            Write::PartAgain => upload_req(Method::PUT, upload)
                .query("partNumber", "1")
                .body(part_again()),
            Write::Complete => upload_req(Method::POST, upload).body(completion()),
            Write::Delete => Req::new(Method::DELETE, Some(BUCKET), Some("gone")),
            Write::PutIfMatch => Req::put(BUCKET, "big", new_big())
                .header("if-match", &format!("\"{}\"", md5_hex(&old_big()))),
            Write::Tagging => Req::new(Method::PUT, Some(BUCKET), Some("small"))
                .query("tagging", "")
                .body(
                    "<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>",
                ),
            Write::PutVersion => Req::put(VERSIONED, "v", new_version()),
            Write::DeleteMarker => Req::new(Method::DELETE, Some(VERSIONED), Some("v")),
            Write::DeleteVersion => Req::new(Method::DELETE, Some(VERSIONED), Some("v"))
                .query("versionId", &seeded.version),
            Write::TornBody => Req::new(Method::PUT, Some(BUCKET), Some("big")).stream(
                Box::pin(DiesHalfway {
                    body: new_big(),
                    sent: 0,
                    tmp: root.join("tmp"),
                }),
                new_big().len() as u64,
            ),
        }
    }
}

/// A request body that, after sending half of `body`, waits until the
/// store has written at least 1 MiB of it to a temp file and then kills the
/// process.
struct DiesHalfway {
    body: Bytes,
    sent: usize,
    tmp: PathBuf,
}

impl futures_util::Stream for DiesHalfway {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.sent >= self.body.len() / 2 {
            // Blocking is fine: the store writes on its own thread.
            loop {
                let written = std::fs::read_dir(&self.tmp)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .any(|m| m.len() >= MIB as u64);
                if written {
                    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        let chunk = self.body.slice(self.sent..self.sent + 256 * 1024);
        self.sent += chunk.len();
        Poll::Ready(Some(Ok(chunk)))
    }
}

impl s3s::stream::ByteStream for DiesHalfway {}

/// The child: runs one write against a store that crashes. Only
/// meaningful when `crash_points` starts it.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "the child process of crash_points"]
async fn crash_child() {
    let Ok(root) = std::env::var("OBJECTS_CRASH_ROOT") else {
        return;
    };
    let root = PathBuf::from(root);
    let point = std::env::var("OBJECTS_CRASH_POINT").unwrap();
    let seeded = Seeded {
        upload: std::env::var("OBJECTS_CRASH_UPLOAD").unwrap(),
        version: std::env::var("OBJECTS_CRASH_VERSION").unwrap(),
    };
    let write = Write::from_name(&std::env::var("OBJECTS_CRASH_WRITE").unwrap());
    let h = Harness::open(&root, (!point.is_empty()).then_some(point.as_str()), &[]);
    let resp = h
        .send(Some(&h.admin.clone()), write.request(&root, &seeded))
        .await;
    // Reaching this line means the process did not die where it should.
    println!("the write finished: {} {}", resp.status, resp.text());
}

/// Checks what holds after any crash, on a reopened store.
async fn check_consistent(h: &Harness) {
    let tmp: Vec<_> = std::fs::read_dir(h.root.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "tmp/ not emptied at open: {tmp:?}");
    let conn = rusqlite::Connection::open(h.root.join("index.db")).unwrap();
    let mut referenced = BTreeSet::new();
    let mut stmt = conn
        .prepare(
            "SELECT file, size FROM objects WHERE file IS NOT NULL
             UNION ALL SELECT file, size FROM parts",
        )
        .unwrap();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap()
    {
        let (file, size) = row.unwrap();
        let path = h.root.join("data").join(&file[..2]).join(&file);
        let len = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("recorded body {file} missing: {e}"))
            .len();
        assert_eq!(len, size as u64, "body {file} is not its record's size");
        referenced.insert(file);
    }
    assert_eq!(
        h.data_files(),
        referenced,
        "body files no record names (or the reverse)"
    );
    let mut stmt = conn
        .prepare("SELECT bucket, key, version, size, etag FROM objects WHERE marker = 0")
        .unwrap();
    let rows: Vec<(String, String, String, i64, String)> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (bucket, key, version, size, etag) in rows {
        let body = h
            .ok(Req::get(&bucket, &key).query("versionId", &version))
            .await
            .body;
        assert_eq!(
            body.len() as i64,
            size,
            "{key}: body and record disagree on size"
        );
        if !etag.contains('-') {
            assert_eq!(
                md5_hex(&body),
                etag,
                "{key}: body and record disagree on ETag"
            );
        }
    }
}

/// The parts of `upload` as ListParts lists them: `(number, ETag)`.
async fn parts_listed(h: &Harness, upload: &str) -> Option<Vec<(String, String)>> {
    let resp = h
        .send(Some(&h.admin.clone()), upload_req(Method::GET, upload))
        .await;
    match resp.status {
        200 => Some(
            resp.tags("PartNumber")
                .into_iter()
                .zip(resp.tags("ETag"))
                .collect(),
        ),
        404 => {
            assert_eq!(resp.code(), "NoSuchUpload");
            None
        }
        other => panic!("ListParts: {other} {}", resp.text()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_points() {
    let joined = || {
        let mut out = part(1).to_vec();
        out.extend_from_slice(&part(2));
        Some(Bytes::from(out))
    };
    // (write, crash point, whether the write took effect)
    let cases: &[(Write, &str, bool)] = &[
        (Write::PutBig, "object_write:body_durable", false),
        (Write::PutBig, "object_write:recorded", true),
        (Write::PutSmall, "object_write:body_durable", false),
        (Write::PutSmall, "object_write:recorded", true),
        (Write::Copy, "object_write:body_durable", false),
        (Write::Copy, "object_write:recorded", true),
        (Write::Part, "object_part:body_durable", false),
        (Write::PartAgain, "object_part:body_durable", false),
        (Write::PartAgain, "object_part:recorded", true),
        (Write::Complete, "object_complete:assembled", false),
        (Write::Complete, "object_complete:recorded", true),
        (Write::Delete, "object_delete:recorded", true),
        (Write::PutIfMatch, "object_write:body_durable", false),
        (Write::PutIfMatch, "object_write:recorded", true),
        (Write::Tagging, "object_meta:uncommitted", false),
        (Write::PutVersion, "object_write:body_durable", false),
        (Write::PutVersion, "object_write:recorded", true),
        (Write::DeleteMarker, "object_delete:recorded", true),
        (Write::DeleteVersion, "object_delete:recorded", true),
        (Write::TornBody, "", false),
    ];
    let mut points_used: BTreeSet<&str> = BTreeSet::new();
    for &(write, point, applied) in cases {
        let case = format!("{write:?} at '{point}'");
        points_used.insert(point);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let seeded = seed(&root).await;
        let upload = seeded.upload.clone();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("OBJECTS_CRASH_ROOT", &root)
            .env("OBJECTS_CRASH_POINT", point)
            .env("OBJECTS_CRASH_UPLOAD", &upload)
            .env("OBJECTS_CRASH_VERSION", &seeded.version)
            .env("OBJECTS_CRASH_WRITE", format!("{write:?}"))
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(nix::sys::signal::Signal::SIGKILL as i32),
            "{case}: the child did not die at the crash point: {:?}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if matches!(write, Write::TornBody) {
            let torn = std::fs::read_dir(root.join("tmp"))
                .unwrap()
                .any(|e| e.unwrap().metadata().unwrap().len() >= MIB as u64);
            assert!(torn, "{case}: no partial body in tmp/ to clean up");
        }

        let h = Harness::open(&root, None, &[]);
        check_consistent(&h).await;
        let mut want = State::seeded();
        let mut want_parts = [(1, part(1)), (2, part(2))];
        if applied {
            match write {
                Write::PutBig | Write::PutIfMatch => want.big = Some(new_big()),
                Write::PutSmall => want.small = Some(Bytes::from_static(b"new small")),
                Write::Copy => want.copy = Some(old_big()),
                Write::PartAgain => want_parts[0] = (1, part_again()),
                Write::Complete => want.mp = joined(),
                Write::Delete => want.gone = None,
                Write::PutVersion => want.versions.insert(0, Some(new_version())),
                Write::DeleteMarker => want.versions.insert(0, None),
                Write::DeleteVersion => want.versions.clear(),
                Write::Part | Write::Tagging | Write::TornBody => unreachable!(),
            }
        }
        assert!(
            State::read(&h).await == want,
            "{case}: not the expected objects"
        );
        let listed = parts_listed(&h, &upload).await;
        let want_parts: Vec<(String, String)> = want_parts
            .iter()
            .map(|(n, body)| (n.to_string(), format!("\"{}\"", md5_hex(body))))
            .collect();
        match (write, applied) {
            (Write::Complete, true) => assert_eq!(listed, None, "{case}"),
            _ => assert_eq!(listed, Some(want_parts), "{case}"),
        }
        if matches!(write, Write::Complete) && !applied {
            // The interrupted completion can simply be repeated.
            let done = h
                .ok(upload_req(Method::POST, &upload).body(completion()))
                .await;
            assert!(done.tags("ETag")[0].ends_with("-2\""), "{case}");
            assert_eq!(h.get(BUCKET, "mp").await, joined(), "{case}");
            check_consistent(&h).await;
        }
    }
    let every: BTreeSet<&str> = roost_objects::CRASH_POINTS.iter().copied().collect();
    points_used.remove("");
    assert_eq!(points_used, every, "a crash point without a case");
}

#[test]
fn an_unknown_crash_point_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = roost_objects::ObjectStore::open_crashing_at(dir.path(), "object_write:typo")
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("object_write:body_durable"),
        "{err}"
    );
}

/// Open removes what a crash leaves without any write running: temp files
/// and unreferenced body files, never a referenced one.
#[tokio::test(flavor = "multi_thread")]
async fn open_removes_leftovers_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    seed(&root).await;
    let before = common::data_files(&root);
    std::fs::write(root.join("tmp/0123456789abcdef0123456789abcdef"), b"half").unwrap();
    let stray = root.join("data/ab/ab000000000000000000000000000000");
    std::fs::write(&stray, b"unreferenced").unwrap();
    let h = Harness::open(&root, None, &[]);
    assert!(!stray.exists());
    assert_eq!(h.data_files(), before);
    check_consistent(&h).await;
    assert!(State::read(&h).await == State::seeded(), "objects changed");
}
