//! Drives an [`ObjectStore`]'s S3 service in-process, the whole way a
//! client's request goes (routing, SigV4 verification, the access hook, the
//! operation), with requests signed by a small SigV4 signer, and inspects
//! the store directory.

#![allow(dead_code)] // each test binary uses a different part of the harness

use bytes::Bytes;
use futures_util::StreamExt;
use roost_objects::{AccessKey, KeyLookup, ObjectStore, ServiceOptions};
use s3s::crypto::{Checksum as _, Md5, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// App key pairs the service accepts besides the admin's.
struct Apps(HashMap<String, (String, String)>);

impl KeyLookup for Apps {
    fn app_key(&self, access_key_id: &str) -> Result<Option<(String, String)>, String> {
        Ok(self.0.get(access_key_id).cloned())
    }
}

pub struct Harness {
    pub root: PathBuf,
    pub store: ObjectStore,
    pub admin: AccessKey,
    service: roost_objects::S3Endpoint,
}

impl Harness {
    /// Opens the store in `root` (crashing at `crash_at`, see
    /// [`roost_objects::CRASH_POINTS`]) with the app key pairs `apps`.
    pub fn open(root: &Path, crash_at: Option<&str>, apps: &[(&str, &AccessKey)]) -> Harness {
        let store = match crash_at {
            Some(point) => ObjectStore::open_crashing_at(root, point),
            None => ObjectStore::open(root),
        }
        .expect("open the object store");
        let apps = apps
            .iter()
            .map(|(app, key)| {
                (
                    key.access_key_id.clone(),
                    (key.secret_access_key.clone(), app.to_string()),
                )
            })
            .collect();
        let service = store
            .service(ServiceOptions {
                apps: Some(Arc::new(Apps(apps))),
                domain: None,
            })
            .expect("S3 service");
        Harness {
            root: root.to_path_buf(),
            admin: store.admin_key().expect("admin key"),
            store,
            service,
        }
    }

    /// The S3 service, to serve on a socket.
    pub fn service(&self) -> roost_objects::S3Endpoint {
        self.service.clone()
    }

    /// Sends `req` signed with `key` (unsigned with `None`); the body of
    /// the answer is left to stream.
    pub async fn call(&self, key: Option<&AccessKey>, req: Req) -> http::Response<s3s::Body> {
        let request = req.into_http(key);
        match self.service.call(request).await {
            Ok(response) => response,
            Err(err) => panic!("the S3 service failed: {err:?}"),
        }
    }

    /// [`Harness::call`] with the answer's body read.
    pub async fn send(&self, key: Option<&AccessKey>, req: Req) -> Resp {
        let response = self.call(key, req).await;
        let (parts, mut body) = response.into_parts();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            bytes.extend_from_slice(&chunk.expect("response body"));
        }
        Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: Bytes::from(bytes),
        }
    }

    /// [`Harness::send`] as the admin, expecting a 2xx answer.
    pub async fn ok(&self, req: Req) -> Resp {
        let what = format!("{} {}", req.method, req.path());
        let resp = self.send(Some(&self.admin.clone()), req).await;
        assert!(
            (200..300).contains(&resp.status),
            "{what}: {} {}",
            resp.status,
            resp.text()
        );
        resp
    }

    /// The body of `bucket/key` (admin), or `None` on 404.
    pub async fn get(&self, bucket: &str, key: &str) -> Option<Bytes> {
        let resp = self
            .send(Some(&self.admin.clone()), Req::get(bucket, key))
            .await;
        match resp.status {
            200 => Some(resp.body),
            404 => None,
            other => panic!("GET {bucket}/{key}: {other} {}", resp.text()),
        }
    }

    pub fn data_files(&self) -> BTreeSet<String> {
        data_files(&self.root)
    }
}

/// A request: path-style address, query, headers, body.
pub struct Req {
    pub method: http::Method,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: s3s::Body,
    length: Option<u64>,
}

impl Req {
    pub fn new(method: http::Method, bucket: Option<&str>, key: Option<&str>) -> Req {
        Req {
            method,
            bucket: bucket.map(str::to_string),
            key: key.map(str::to_string),
            query: Vec::new(),
            headers: Vec::new(),
            body: s3s::Body::empty(),
            length: Some(0),
        }
    }
    pub fn root() -> Req {
        Req::new(http::Method::GET, None, None)
    }
    pub fn bucket(method: http::Method, bucket: &str) -> Req {
        Req::new(method, Some(bucket), None)
    }
    pub fn get(bucket: &str, key: &str) -> Req {
        Req::new(http::Method::GET, Some(bucket), Some(key))
    }
    pub fn put(bucket: &str, key: &str, body: impl Into<Bytes>) -> Req {
        Req::new(http::Method::PUT, Some(bucket), Some(key)).body(body)
    }
    pub fn query(mut self, name: &str, value: &str) -> Req {
        self.query.push((name.to_string(), value.to_string()));
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }
    pub fn body(mut self, body: impl Into<Bytes>) -> Req {
        let body: Bytes = body.into();
        self.length = Some(body.len() as u64);
        self.body = s3s::Body::from(body);
        self
    }
    /// A streamed body of `length` bytes.
    pub fn stream(mut self, stream: s3s::stream::DynByteStream, length: u64) -> Req {
        self.length = Some(length);
        self.body = s3s::Body::from(stream);
        self
    }

    /// The URI path: each key byte outside S3's unreserved set and `/`
    /// percent-encoded, as SDKs send it.
    pub fn path(&self) -> String {
        let mut path = String::from("/");
        if let Some(bucket) = &self.bucket {
            path.push_str(bucket);
            if let Some(key) = &self.key {
                path.push('/');
                path.push_str(&uri_encode(key, false));
            }
        }
        path
    }

    fn into_http(self, key: Option<&AccessKey>) -> http::Request<s3s::Body> {
        let path = self.path();
        let mut query: Vec<(String, String)> = self
            .query
            .iter()
            .map(|(n, v)| (uri_encode(n, true), uri_encode(v, true)))
            .collect();
        query.sort();
        let query = query
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut headers = self.headers;
        headers.push(("host".into(), "localhost".into()));
        if let Some(length) = self.length {
            headers.push(("content-length".into(), length.to_string()));
        }
        if let Some(key) = key {
            let now = time::OffsetDateTime::now_utc();
            let amz_date = format!(
                "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
                now.year(),
                u8::from(now.month()),
                now.day(),
                now.hour(),
                now.minute(),
                now.second()
            );
            headers.push(("x-amz-date".into(), amz_date.clone()));
            headers.push(("x-amz-content-sha256".into(), "UNSIGNED-PAYLOAD".into()));
            headers.sort();
            let canonical_headers: String = headers
                .iter()
                .map(|(n, v)| format!("{n}:{}\n", v.trim()))
                .collect();
            let signed: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
            let signed = signed.join(";");
            let canonical = format!(
                "{}\n{}\n{}\n{}\n{}\nUNSIGNED-PAYLOAD",
                self.method, path, query, canonical_headers, signed
            );
            let date = &amz_date[..8];
            let scope = format!("{date}/us-east-1/s3/aws4_request");
            let to_sign = format!(
                "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
                hex::encode(Sha256::checksum(canonical.as_bytes()))
            );
            let mut signing = hmac(
                format!("AWS4{}", key.secret_access_key).as_bytes(),
                date.as_bytes(),
            );
            for part in ["us-east-1", "s3", "aws4_request"] {
                signing = hmac(&signing, part.as_bytes());
            }
            let signature = hex::encode(hmac(&signing, to_sign.as_bytes()));
            headers.push((
                "authorization".into(),
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                    key.access_key_id
                ),
            ));
        }
        let uri = if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        };
        let mut request = http::Request::builder().method(self.method).uri(uri);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        request.body(self.body).expect("valid request")
    }
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::checksum(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(&block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(&block.map(|b| b ^ 0x5c));
    outer.update(&inner.finalize());
    outer.finalize()
}

/// AWS's URI encoding: unreserved characters stay, `/` stays unless
/// `slash`, everything else is `%XX` per UTF-8 byte.
pub fn uri_encode(s: &str, slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !slash)
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undoes [`uri_encode`].
pub fn uri_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex escape"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("text header").to_string())
    }
    /// The S3 error code of an error answer.
    pub fn code(&self) -> String {
        self.tags("Code").into_iter().next().unwrap_or_default()
    }
    /// The text of every `<name>` element, unescaped.
    pub fn tags(&self, name: &str) -> Vec<String> {
        tags(&self.text(), name)
    }
    /// Asserts an S3 error answer.
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "{}",
            self.text()
        );
    }
}

pub fn tags(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let end = rest.find(&close).expect("closing tag");
        out.push(unescape(&rest[..end]));
        rest = &rest[end + close.len()..];
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let end = rest[amp..].find(';').expect("entity end") + amp;
        let entity = &rest[amp + 1..end];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            e if e.starts_with("#x") => {
                char::from_u32(u32::from_str_radix(&e[2..], 16).expect("hex")).expect("char")
            }
            e if e.starts_with('#') => {
                char::from_u32(e[1..].parse().expect("decimal")).expect("char")
            }
            other => panic!("unknown entity &{other};"),
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::checksum(data))
}

/// `size` bytes that differ with `seed` (cheap, not random).
pub fn pattern(seed: u64, size: usize) -> Bytes {
    let mut out = Vec::with_capacity(size);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
    Bytes::from(out)
}

/// Names of the body files under `root/data`.
pub fn data_files(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for dir in std::fs::read_dir(root.join("data")).expect("data dir") {
        let dir = dir.expect("entry");
        for file in std::fs::read_dir(dir.path()).expect("data subdir") {
            out.insert(
                file.expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    out
}

/// Every path under `dir`, relative to it.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).expect("read dir") {
            let path = entry.expect("entry").path();
            out.push(path.strip_prefix(dir).expect("under dir").to_path_buf());
            if path.is_dir() && !path.is_symlink() {
                pending.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Peak resident memory of this process since the last [`reset_peak`], in
/// bytes.
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM value");
    kib * 1024
}

/// Resets the peak to the current resident size.
pub fn reset_peak() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS (clear_refs)");
    peak_rss()
}
