//! roost's S3-compatible object store: buckets and objects on the local
//! filesystem, served over the S3 protocol by [`s3s`] (routing, SigV4 header
//! and presigned auth, aws-chunked bodies, XML), behind [`S3Endpoint`],
//! which adds what s3s lacks (CORS preflights, streamed browser uploads,
//! chunked bodies without a length, request ids).
//!
//! Layout of the store directory:
//!
//! ```text
//! index.db            SQLite (WAL, synchronous=FULL): buckets, objects, uploads, parts
//! data/<ab>/<id>      bodies larger than 64 KiB, named by a random id
//! tmp/<id>            bodies being received (emptied at open)
//! admin-key.json      the operator's key pair (0600), made at first open
//! ```
//!
//! Why an index instead of files named after keys: an object's key never
//! becomes a path. Any UTF-8 key (`..`, slashes, `a/b` next to `a%2Fb`,
//! 1024 bytes without a slash) is a value in a SQLite row, so no key can
//! escape the directory or collide with another, and bodies are files named
//! by random ids. The index also gives ListObjects its order (S3 sorts keys
//! by UTF-8 bytes, which is SQLite's BINARY collation) and lets a common
//! prefix be skipped in one seek, where a directory scan would read and sort
//! whole trees.
//!
//! Why no torn object survives a crash: a body is written to `tmp/`,
//! fsynced, renamed into `data/` and its directory fsynced *before* the
//! index transaction that names it commits; the record (size, ETag,
//! checksums, headers, user metadata) and the switch from the old body to
//! the new are that one transaction. A crash before the commit leaves the
//! old record, pointing at the old file, which is deleted only after the
//! commit; the new file is then unreferenced and removed at the next open.
//! Small bodies (up to 64 KiB) are stored inside the record, so one WAL
//! fsync, shared by all writes committed together (see `index/mod.rs`), makes
//! them durable. Multipart uploads keep each part as such a file and
//! complete by concatenating them in the kernel (`copy_file_range`) into a
//! new file, so no object is held in memory.
//!
//! [`ObjectStore::open_crashing_at`] kills the process between two of these
//! steps ([`CRASH_POINTS`]); `tests/crash.rs` does so at each one and checks
//! the reopened store.

mod access;
mod endpoint;
mod error;
mod index;
mod record;
mod s3;
mod store;

pub use access::{AccessKey, KeyLookup, Principal};
pub use endpoint::S3Endpoint;
pub use error::{Error, Result};
pub use record::BucketInfo;
pub use store::{is_valid_bucket_name, ObjectStore, CRASH_POINTS};

use std::path::Path;
use std::sync::Arc;

/// Name of the admin key pair file in the store directory.
const ADMIN_KEY_FILE: &str = "admin-key.json";

/// How the S3 endpoint authenticates and names buckets.
pub struct ServiceOptions {
    /// Key pairs of apps, besides the admin key pair.
    pub apps: Option<Arc<dyn KeyLookup>>,
    /// Base domain for virtual-host style (`<bucket>.<domain>`); other
    /// hosts are served path style.
    pub domain: Option<String>,
}

impl ObjectStore {
    /// The operator's key pair, created on first use (0600) in the store
    /// directory.
    pub fn admin_key(&self) -> Result<AccessKey> {
        admin_key(&self.inner.root.join(ADMIN_KEY_FILE))
    }

    /// The S3 endpoint over this store.
    pub fn service(&self, options: ServiceOptions) -> Result<S3Endpoint> {
        let keys = access::Keys {
            admin: self.admin_key()?,
            apps: options.apps,
            store: self.clone(),
        };
        let domain = options.domain.map(access::Domain);
        let mut builder = s3s::service::S3ServiceBuilder::new(self.clone());
        builder.set_auth(keys.clone());
        builder.set_access(keys.clone());
        if let Some(domain) = &domain {
            builder.set_host(domain.clone());
        }
        Ok(S3Endpoint::new(builder.build(), self.clone(), keys, domain))
    }
}

fn admin_key(path: &Path) -> Result<AccessKey> {
    match std::fs::read(path) {
        Ok(bytes) => return Ok(serde_json::from_slice(&bytes)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let key = AccessKey::generate("RSTADMIN");
    roost_atomic_file::write(path, &serde_json::to_vec_pretty(&key)?, 0o600)?;
    tracing::info!(path = %path.display(), "wrote the S3 admin key pair");
    Ok(key)
}

/// Serves `service` on `listener` (HTTP/1.1) until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: S3Endpoint,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    while let Some((socket, _)) = roost_workers::accept(&listener, &mut shutdown).await {
        let service = service.clone();
        tokio::spawn(async move {
            let answer = hyper::service::service_fn(move |req| answer(service.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(socket), answer);
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "S3 connection ended with an error");
            }
        });
    }
}

/// The endpoint's answer to `req`; an error answer to a request that
/// carries a body closes the connection.
///
/// Why: an operation refused before it reads the body (AccessDenied,
/// NoSuchBucket, a bad signature) leaves the body unread, and a client that
/// sent `Expect: 100-continue` may then skip it. hyper, noticing the
/// dropped body only after the response went out, reads once more "in case
/// a tiny body was included", and can take the first bytes of the client's
/// next request for that body: the next request arrives mangled (`GET`
/// read as `ET`, hence SignatureDoesNotMatch). A server that does not read
/// a body must close the connection instead (RFC 9110, 10.1.1).
async fn answer(
    service: S3Endpoint,
    req: http::Request<hyper::body::Incoming>,
) -> Result<s3s::HttpResponse, s3s::HttpError> {
    use hyper::body::Body as _;
    let has_body = !req.body().is_end_stream();
    let mut response = service.call(req.map(s3s::Body::from)).await?;
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    Ok(response)
}
