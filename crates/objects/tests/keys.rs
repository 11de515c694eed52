//! Keys are values, never paths: any UTF-8 key (slashes, dot segments,
//! spaces, unicode, escapes, 1024 bytes) stores and reads back its own
//! body, no two keys collide, and nothing is written outside the store's
//! own layout.

mod common;

use common::{data_files, tags, uri_decode, walk, Harness, Req};
use http::Method;
use std::collections::BTreeSet;
use std::path::PathBuf;

const BUCKET: &str = "keys";
/// Larger than the inline limit (64 KiB), so these bodies become files.
const BIG: usize = 100 * 1024;

fn hostile_keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "a/b",
        "a%2Fb",
        "a%252Fb",
        "a\\b",
        "..",
        ".",
        "../escape",
        "../../../../../../tmp/roost-objects-escape",
        "a/../b",
        "a/./b",
        "./x",
        "/leading",
        "a//b",
        "trailing/",
        "sp ace/ü ñ",
        "日本語/キー",
        "emoji 🦀",
        "tmp/x",
        "data/00/x",
        "index.db",
        "admin-key.json",
        "a?b#c",
        "a+b=c&d;e",
        "%",
        "<xml>&amp;'\"",
    ]
    .iter()
    .map(|k| k.to_string())
    .collect();
    keys.push("k".repeat(1024));
    keys.push(format!("{}/{}", "d".repeat(300), "f".repeat(300)));
    keys
}

/// The body of the `i`th key: big (a file) for even `i`, inline for odd.
fn body_of(i: usize, key: &str) -> Vec<u8> {
    let size = if i.is_multiple_of(2) { BIG } else { 100 };
    key.as_bytes()
        .iter()
        .chain(format!("#{i}").as_bytes())
        .copied()
        .cycle()
        .take(size)
        .collect()
}

async fn list_all(h: &Harness, encode: bool) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = Req::bucket(Method::GET, BUCKET)
            .query("list-type", "2")
            .query("max-keys", "7");
        if encode {
            req = req.query("encoding-type", "url");
        }
        if let Some(t) = &token {
            req = req.query("continuation-token", t);
        }
        let resp = h.ok(req).await;
        keys.extend(resp.tags("Key"));
        match resp.tags("NextContinuationToken").into_iter().next() {
            Some(next) => token = Some(next),
            None => return keys,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn any_utf8_key_is_a_value_not_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let h = Harness::open(&root, None, &[]);
    h.ok(Req::bucket(Method::PUT, BUCKET)).await;
    let keys = hostile_keys();
    for (i, key) in keys.iter().enumerate() {
        h.ok(Req::put(BUCKET, key, body_of(i, key))).await;
    }
    for (i, key) in keys.iter().enumerate() {
        let got = h
            .get(BUCKET, key)
            .await
            .unwrap_or_else(|| panic!("{key:?} missing"));
        assert!(got == body_of(i, key), "{key:?} read back another body");
    }

    // Listing: every key exactly once, in UTF-8 byte order, also url-encoded.
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(list_all(&h, false).await, sorted);
    let encoded = list_all(&h, true).await;
    assert!(
        encoded.contains(&"sp%20ace/%C3%BC%20%C3%B1".to_string()),
        "{encoded:?}"
    );
    assert_eq!(
        encoded.iter().map(|k| uri_decode(k)).collect::<Vec<_>>(),
        sorted
    );
    let rolled = h
        .ok(Req::bucket(Method::GET, BUCKET)
            .query("list-type", "2")
            .query("delimiter", "/")
            .query("prefix", "a/"))
        .await;
    let prefixes: Vec<String> = rolled
        .tags("CommonPrefixes")
        .iter()
        .flat_map(|p| tags(p, "Prefix"))
        .collect();
    assert_eq!(prefixes, ["a/../", "a/./", "a//"]);
    assert_eq!(rolled.tags("Key"), ["a/b"]);

    // On disk: nothing outside the store, only the store's own layout inside
    // it, and the big bodies as files named by random ids.
    let outside: Vec<PathBuf> = walk(dir.path());
    assert!(
        outside.iter().all(|p| p.starts_with("store")),
        "files outside the store: {outside:?}"
    );
    assert!(!std::path::Path::new("/tmp/roost-objects-escape").exists());
    for path in walk(&root) {
        let parts: Vec<String> = path
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        let allowed = match parts.as_slice() {
            [top] => [
                "data",
                "tmp",
                "index.db",
                "index.db-wal",
                "index.db-shm",
                "admin-key.json",
            ]
            .contains(&top.as_str()),
            [data, ab] => data == "data" && ab.len() == 2 && hex::decode(ab).is_ok(),
            [data, ab, id] => {
                data == "data"
                    && id.len() == 32
                    && id.starts_with(ab.as_str())
                    && hex::decode(id).is_ok()
            }
            _ => false,
        };
        assert!(allowed, "unexpected path in the store: {path:?}");
    }
    let big = keys.len().div_ceil(2);
    assert_eq!(data_files(&root).len(), big, "one file per big body");

    // Deleting by key deletes that key only.
    let resp = h
        .ok(Req::new(Method::DELETE, Some(BUCKET), Some("a%2Fb")))
        .await;
    assert_eq!(resp.status, 204);
    assert!(h.get(BUCKET, "a%2Fb").await.is_none());
    assert!(h.get(BUCKET, "a/b").await.is_some());
    let xml: String = keys
        .iter()
        .map(|k| {
            format!(
                "<Object><Key>{}</Key></Object>",
                k.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
            )
        })
        .collect();
    let resp = h
        .ok(Req::bucket(Method::POST, BUCKET)
            .query("delete", "")
            .body(format!("<Delete><Quiet>false</Quiet>{xml}</Delete>")))
        .await;
    let deleted: BTreeSet<String> = tags(&resp.text(), "Key").into_iter().collect();
    assert_eq!(deleted, keys.iter().cloned().collect());
    assert!(list_all(&h, false).await.is_empty());
    assert!(data_files(&root).is_empty(), "bodies left after delete");
}
