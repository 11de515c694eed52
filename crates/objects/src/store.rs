//! Buckets, object records and bodies on the local filesystem.

use crate::error::{Error, Result};
use crate::index::{self, buckets, Index};
use crate::record::{Body, BucketConfig, BucketInfo, CannedAcl};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Md5};
use s3s::dto::{Checksum, StreamingBlob};
use s3s::s3_error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bodies up to this size live inside their index record: one WAL fsync
/// (shared by every write committed with it) makes them durable, instead of
/// a file fsync, a directory fsync and the WAL fsync.
pub(crate) const INLINE_MAX: usize = 64 * 1024;
/// Bodies are written to disk in pieces of this size.
const WRITE_CHUNK: usize = 1024 * 1024;

/// A body received from a client and made durable, not yet referenced.
pub(crate) struct Received {
    pub body: Body,
    pub size: u64,
    pub md5: [u8; 16],
    pub checksum: Checksum,
}

/// The object store: buckets, objects and multipart uploads under one
/// directory. Cheap to clone.
#[derive(Clone)]
pub struct ObjectStore {
    pub(crate) inner: Arc<StoreInner>,
}

pub(crate) struct StoreInner {
    pub root: PathBuf,
    pub index: Arc<Index>,
    /// The point at which the process kills itself (crash tests).
    crash_at: Option<&'static str>,
}

/// Where a write can be interrupted by [`ObjectStore::open_crashing_at`]:
/// each is the moment right after a durable step and before the next one.
///
/// - `object_write:body_durable`: PutObject/CopyObject, the new body is a
///   durable file (or inline bytes), its record not yet committed;
/// - `object_write:recorded`: the record is committed, the replaced body
///   not yet removed;
/// - `object_part:body_durable`: UploadPart/UploadPartCopy, the part file
///   is durable, not yet recorded;
/// - `object_part:recorded`: the part is recorded, the file of the part it
///   replaced (an earlier upload of its number) not yet removed;
/// - `object_complete:assembled`: CompleteMultipartUpload, the concatenated
///   body is durable, not yet recorded;
/// - `object_complete:recorded`: the object is recorded and the upload gone,
///   the part files not yet removed;
/// - `object_delete:recorded`: DeleteObject(s) (of a key, of a version, or
///   adding a delete marker) or a purging bucket delete committed, the
///   bodies not yet removed;
/// - `object_meta:uncommitted`: PutObjectTagging/PutObjectAcl and friends,
///   the metadata row rewritten inside the write's transaction, not yet
///   committed.
pub const CRASH_POINTS: &[&str] = &[
    "object_write:body_durable",
    "object_write:recorded",
    "object_part:body_durable",
    "object_part:recorded",
    "object_complete:assembled",
    "object_complete:recorded",
    "object_delete:recorded",
    "object_meta:uncommitted",
];

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// S3's bucket naming rules (the DNS-compatible subset every client accepts).
pub fn is_valid_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

impl ObjectStore {
    /// Opens (creating) the store in `root`. Removes what a crash can leave
    /// behind: half-written files in `tmp/`, and body files no record names.
    pub fn open(root: impl Into<PathBuf>) -> Result<ObjectStore> {
        ObjectStore::open_inner(root.into(), None)
    }

    /// [`ObjectStore::open`] for crash tests: the process kills itself
    /// (SIGKILL, no unwinding, no flushing) when a write reaches `point`,
    /// one of [`CRASH_POINTS`].
    pub fn open_crashing_at(root: impl Into<PathBuf>, point: &str) -> Result<ObjectStore> {
        let Some(point) = CRASH_POINTS.iter().copied().find(|p| *p == point) else {
            return Err(Error::Internal(format!(
                "unknown crash point '{point}'; known: {}",
                CRASH_POINTS.join(", ")
            )));
        };
        ObjectStore::open_inner(root.into(), Some(point))
    }

    fn open_inner(root: PathBuf, crash_at: Option<&'static str>) -> Result<ObjectStore> {
        create_data_dirs(&root)?;
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        let index = Arc::new(Index::open(&root.join("index.db"))?);
        let store = ObjectStore {
            inner: Arc::new(StoreInner {
                root,
                index,
                crash_at,
            }),
        };
        store.remove_unreferenced_files()?;
        Ok(store)
    }

    /// Kills the process if this store was opened to crash at `point`.
    pub(crate) fn crash_point(&self, point: &'static str) {
        if self.inner.crash_at == Some(point) {
            tracing::warn!(point, "crash point reached: killing the process");
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }

    fn remove_unreferenced_files(&self) -> Result<()> {
        let referenced = self.inner.index.read(index::referenced_files)?;
        let mut removed = 0usize;
        for dir in std::fs::read_dir(self.inner.root.join("data"))? {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(dir.path())? {
                let file = file?;
                let name = file.file_name();
                if !referenced.contains(name.to_string_lossy().as_ref()) {
                    std::fs::remove_file(file.path())?;
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "removed object files no record references (left by a crash)"
            );
        }
        Ok(())
    }

    pub(crate) fn data_path(&self, id: &str) -> PathBuf {
        data_path(&self.inner.root, id)
    }

    /// Creates a bucket owned by `owner` (an app name; `None`: admin only).
    pub async fn create_bucket(&self, name: &str, owner: Option<&str>) -> Result<BucketInfo> {
        self.create_bucket_with_acl(name, owner, CannedAcl::Private)
            .await
    }

    /// [`ObjectStore::create_bucket`] with a canned ACL.
    pub(crate) async fn create_bucket_with_acl(
        &self,
        name: &str,
        owner: Option<&str>,
        acl: CannedAcl,
    ) -> Result<BucketInfo> {
        if !is_valid_bucket_name(name) {
            return Err(Error::InvalidBucketName(name.to_string()));
        }
        let info = BucketInfo {
            name: name.to_string(),
            owner: owner.map(str::to_string),
            created_ms: now_ms(),
        };
        let record = info.clone();
        self.inner
            .index
            .write(move |conn| buckets::create(conn, &record, acl))
            .await?;
        tracing::info!(bucket = name, owner = ?owner, "bucket created");
        Ok(info)
    }

    /// Deletes a bucket. Without `purge` it must hold no objects; with
    /// `purge` its objects go with it. Unfinished multipart uploads are
    /// always discarded.
    pub async fn delete_bucket(&self, name: &str, purge: bool) -> Result<()> {
        let bucket = name.to_string();
        let files = self
            .inner
            .index
            .write(move |conn| buckets::delete(conn, &bucket, purge))
            .await?;
        self.crash_point("object_delete:recorded");
        self.remove_files(files).await;
        tracing::info!(bucket = name, purge, "bucket deleted");
        Ok(())
    }

    /// Every bucket, by name.
    pub async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        self.inner.index.read_async(buckets::list).await
    }

    /// Names of the buckets `owner` owns, oldest first (a point read).
    pub fn bucket_names_of(&self, owner: &str) -> Result<Vec<String>> {
        self.inner.index.read(|conn| buckets::names_of(conn, owner))
    }

    /// The bucket's configuration (owner, versioning, ACL, CORS, tags), if
    /// it exists.
    pub(crate) async fn bucket_config(&self, name: &str) -> Result<Option<BucketConfig>> {
        let name = name.to_string();
        self.inner
            .index
            .read_async(move |conn| buckets::config(conn, &name))
            .await
    }

    /// The bucket's record, if it exists.
    pub async fn bucket(&self, name: &str) -> Result<Option<BucketInfo>> {
        let name = name.to_string();
        self.inner
            .index
            .read_async(move |conn| buckets::get(conn, &name))
            .await
    }

    /// Removes body files no record references any more. A failure only
    /// leaks the file until the next open, which removes it.
    pub(crate) async fn remove_files(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let root = self.inner.root.clone();
        let removal = tokio::task::spawn_blocking(move || {
            for id in ids {
                if let Err(err) = std::fs::remove_file(data_path(&root, &id)) {
                    if err.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(file = id, error = %err, "cannot remove an object file");
                    }
                }
            }
        });
        if let Err(err) = removal.await {
            tracing::warn!(error = %err, "object file removal failed");
        }
    }

    /// Receives a request body: hashes it (MD5 for the ETag plus the
    /// `hasher`'s checksums) and keeps it in memory when small (and
    /// `allow_inline`), otherwise streams it to a new durable file.
    pub(crate) async fn receive(
        &self,
        mut body: StreamingBlob,
        mut hasher: ChecksumHasher,
        allow_inline: bool,
    ) -> Result<Received> {
        let mut md5 = Md5::new();
        let mut buffer = BytesMut::new();
        let mut size: u64 = 0;
        let mut writer: Option<FileWriter> = None;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(body_error)?;
            md5.update(&chunk);
            hasher.update(&chunk);
            size += chunk.len() as u64;
            buffer.extend_from_slice(&chunk);
            if writer.is_none() && (!allow_inline || buffer.len() > INLINE_MAX) {
                writer = Some(FileWriter::start(self.inner.root.clone())?);
            }
            if let Some(writer) = &mut writer {
                if buffer.len() >= WRITE_CHUNK {
                    writer.send(buffer.split().freeze()).await?;
                }
            }
        }
        let body = match writer {
            Some(mut writer) => {
                if !buffer.is_empty() {
                    writer.send(buffer.split().freeze()).await?;
                }
                Body::File(writer.finish().await?)
            }
            None if allow_inline => Body::Inline(buffer.freeze()),
            None => {
                let mut writer = FileWriter::start(self.inner.root.clone())?;
                writer.send(buffer.freeze()).await?;
                Body::File(writer.finish().await?)
            }
        };
        Ok(Received {
            body,
            size,
            md5: md5.finalize(),
            checksum: hasher.finalize(),
        })
    }

    /// Copies `ranges` of stored bodies into one new body (inline when small
    /// enough), hashing it on the way. Runs on the blocking pool; the data
    /// streams through a fixed buffer.
    pub(crate) async fn assemble(
        &self,
        sources: Vec<(Body, std::ops::Range<u64>)>,
        hasher: ChecksumHasher,
        allow_inline: bool,
    ) -> Result<Received> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.assemble_blocking(sources, hasher, allow_inline))
            .await
            .map_err(|e| Error::Internal(format!("copy task failed: {e}")))?
    }

    fn assemble_blocking(
        &self,
        sources: Vec<(Body, std::ops::Range<u64>)>,
        mut hasher: ChecksumHasher,
        allow_inline: bool,
    ) -> Result<Received> {
        use std::io::{Read, Seek};
        let total: u64 = sources.iter().map(|(_, r)| r.end - r.start).sum();
        let mut md5 = Md5::new();
        if allow_inline && total <= INLINE_MAX as u64 {
            let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
            for (body, range) in &sources {
                let start = out.len();
                self.read_range(body, range.clone(), &mut out)?;
                md5.update(&out[start..]);
                hasher.update(&out[start..]);
            }
            return Ok(Received {
                size: total,
                body: Body::Inline(Bytes::from(out)),
                md5: md5.finalize(),
                checksum: hasher.finalize(),
            });
        }
        let id = random_id();
        let tmp = self.inner.root.join("tmp").join(&id);
        let mut file = std::fs::File::create(&tmp)?;
        let mut buf = vec![0u8; WRITE_CHUNK];
        for (body, range) in &sources {
            match body {
                Body::Inline(bytes) => {
                    let slice = bytes
                        .get(to_usize(range.start)?..to_usize(range.end)?)
                        .ok_or_else(|| {
                            Error::Internal("inline body shorter than recorded".into())
                        })?;
                    md5.update(slice);
                    hasher.update(slice);
                    file.write_all(slice)?;
                }
                Body::File(src) => {
                    let mut input = std::fs::File::open(self.data_path(src))?;
                    input.seek(std::io::SeekFrom::Start(range.start))?;
                    let mut input = input.take(range.end - range.start);
                    loop {
                        let n = input.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        md5.update(&buf[..n]);
                        hasher.update(&buf[..n]);
                        file.write_all(&buf[..n])?;
                    }
                }
            }
        }
        commit_file(&self.inner.root, &id, file)?;
        Ok(Received {
            size: total,
            body: Body::File(id),
            md5: md5.finalize(),
            checksum: hasher.finalize(),
        })
    }

    /// Concatenates part files into one new durable file, returning its id
    /// and size. The copy stays in the kernel (`copy_file_range`), so the
    /// object is never held in memory.
    pub(crate) async fn concatenate(
        &self,
        parts: Vec<(Body, std::ops::Range<u64>)>,
    ) -> Result<(String, u64)> {
        let root = self.inner.root.clone();
        tokio::task::spawn_blocking(move || {
            let id = random_id();
            let mut out = std::fs::File::create(root.join("tmp").join(&id))?;
            let mut size = 0u64;
            for (body, range) in &parts {
                match body {
                    Body::File(part) => {
                        let mut input = std::fs::File::open(data_path(&root, part))?;
                        size += std::io::copy(&mut input, &mut out)?;
                    }
                    Body::Inline(bytes) => {
                        let slice = bytes
                            .get(to_usize(range.start)?..to_usize(range.end)?)
                            .ok_or_else(|| {
                                Error::Internal("inline body shorter than recorded".into())
                            })?;
                        out.write_all(slice)?;
                        size += slice.len() as u64;
                    }
                }
            }
            commit_file(&root, &id, out)?;
            Ok((id, size))
        })
        .await
        .map_err(|e| Error::Internal(format!("concatenation failed: {e}")))?
    }

    /// Reads `body` (at most `max` bytes) into a temp file that is unlinked
    /// at once, so that nothing of it outlives the request, even a crash;
    /// returns the file, rewound, and the body's length.
    pub(crate) async fn spool(
        &self,
        mut body: s3s::Body,
        max: u64,
    ) -> std::result::Result<(std::fs::File, u64), s3s::S3Error> {
        use std::io::Seek;
        use tokio::io::AsyncWriteExt;
        let path = self.inner.root.join("tmp").join(random_id());
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(Error::from)?;
        std::fs::remove_file(&path).map_err(Error::from)?;
        let mut file = tokio::fs::File::from_std(file);
        let mut len: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(body_error)?;
            len += chunk.len() as u64;
            if len > max {
                return Err(body_error(Box::new(BodySizeError::TooLarge { max })));
            }
            file.write_all(&chunk).await.map_err(Error::from)?;
        }
        file.flush().await.map_err(Error::from)?;
        let mut file = file.into_std().await;
        file.rewind().map_err(Error::from)?;
        Ok((file, len))
    }

    /// Drops a received body that will not be recorded.
    pub(crate) async fn discard(&self, body: &Body) {
        if let Body::File(id) = body {
            self.remove_files(vec![id.clone()]).await;
        }
    }

    /// Appends `range` of `body` to `out`.
    pub(crate) fn read_range(
        &self,
        body: &Body,
        range: std::ops::Range<u64>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        use std::io::{Read, Seek};
        match body {
            Body::Inline(bytes) => {
                let slice = bytes
                    .get(to_usize(range.start)?..to_usize(range.end)?)
                    .ok_or_else(|| Error::Internal("inline body shorter than recorded".into()))?;
                out.extend_from_slice(slice);
            }
            Body::File(id) => {
                let mut file = std::fs::File::open(self.data_path(id))?;
                file.seek(std::io::SeekFrom::Start(range.start))?;
                file.take(range.end - range.start).read_to_end(out)?;
            }
        }
        Ok(())
    }
}

/// A body outside the sizes its request allows, as a body stream reports
/// it (so that the receiving operation stops and answers EntityTooLarge or
/// EntityTooSmall).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodySizeError {
    #[error("the body is larger than the {max} bytes allowed")]
    TooLarge { max: u64 },
    #[error("the body is smaller than the {min} bytes required")]
    TooSmall { min: u64 },
}

/// The S3 error for a request body that failed while being read. A chunk
/// of an aws-chunked body whose signature does not verify is S3's
/// SignatureDoesNotMatch; s3s does not export its decoder's error type, so
/// the case is told by its message (s3s is pinned).
fn body_error(err: s3s::StdError) -> s3s::S3Error {
    if let Some(size) = err.downcast_ref::<BodySizeError>() {
        return match size {
            BodySizeError::TooLarge { .. } => s3_error!(EntityTooLarge, "{size}"),
            BodySizeError::TooSmall { .. } => s3_error!(EntityTooSmall, "{size}"),
        };
    }
    if err.to_string().contains("SignatureMismatch") {
        s3_error!(
            SignatureDoesNotMatch,
            "a chunk signature of the aws-chunked body does not match"
        )
    } else {
        s3_error!(IncompleteBody, "cannot read the request body: {err}")
    }
}

fn to_usize(n: u64) -> Result<usize> {
    usize::try_from(n).map_err(|_| Error::Internal("offset out of range".into()))
}

fn data_path(root: &Path, id: &str) -> PathBuf {
    root.join("data").join(id.get(..2).unwrap_or("00")).join(id)
}

/// Creates `data/00` .. `data/ff` (ids are hex) once, and makes their
/// entries durable, so that a body's rename never lands in a directory whose
/// own entry a power cut could still lose.
fn create_data_dirs(root: &Path) -> Result<()> {
    let data = root.join("data");
    std::fs::create_dir_all(&data)?;
    let mut created = false;
    for byte in 0..=255u8 {
        let dir = data.join(format!("{byte:02x}"));
        if !dir.is_dir() {
            std::fs::create_dir(&dir)?;
            created = true;
        }
    }
    if created {
        std::fs::File::open(&data)?.sync_all()?;
        std::fs::File::open(root)?.sync_all()?;
    }
    Ok(())
}

/// Makes a fully written temp file durable under its final name: fsync the
/// file, rename it into `data/<ab>/`, fsync that directory. Only then may a
/// record name it, so a committed record never points at a missing or
/// partial file.
fn commit_file(root: &Path, id: &str, file: std::fs::File) -> Result<()> {
    file.sync_all()?;
    drop(file);
    let target = data_path(root, id);
    let dir = target
        .parent()
        .ok_or_else(|| Error::Internal("object path has no parent".into()))?;
    std::fs::rename(root.join("tmp").join(id), &target)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Starts the disk writes of a large body while it is still arriving, so
/// that the fsync before the PUT is answered waits for the last few MiB
/// only, not for the whole object.
#[derive(Default)]
struct Writeback {
    written: u64,
    started: u64,
}

impl Writeback {
    /// How much unsynced data may pile up before its writeback is started.
    const STEP: u64 = 8 * 1024 * 1024;

    fn wrote(&mut self, file: &std::fs::File, len: u64) {
        use std::os::fd::AsRawFd;
        self.written += len;
        let pending = self.written - self.started;
        if pending < Self::STEP {
            return;
        }
        let (Ok(offset), Ok(count)) = (i64::try_from(self.started), i64::try_from(pending)) else {
            return;
        };
        // SAFETY: sync_file_range only reads its integer arguments; the fd
        // is open for as long as `file` is borrowed.
        let rc = unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, count, libc::SYNC_FILE_RANGE_WRITE)
        };
        if rc != 0 {
            // Only a hint: the fsync at commit still reports any error.
            tracing::debug!(error = %std::io::Error::last_os_error(), "sync_file_range failed");
        }
        self.started = self.written;
    }
}

/// Writes a body to a temp file on a blocking thread while the request
/// task keeps reading and hashing the next chunks.
struct FileWriter {
    /// `None` marks the end of the body; a channel closed without it (the
    /// request was dropped) discards the temp file.
    chunks: tokio::sync::mpsc::Sender<Option<Bytes>>,
    done: tokio::task::JoinHandle<Result<String>>,
}

impl FileWriter {
    fn start(root: PathBuf) -> Result<FileWriter> {
        let id = random_id();
        let mut file = std::fs::File::create(root.join("tmp").join(&id))?;
        let (chunks, mut rx) = tokio::sync::mpsc::channel::<Option<Bytes>>(4);
        let done = tokio::task::spawn_blocking(move || {
            let tmp = root.join("tmp").join(&id);
            let mut writeback = Writeback::default();
            loop {
                match rx.blocking_recv() {
                    Some(Some(chunk)) => {
                        if let Err(err) = file.write_all(&chunk) {
                            drop(file);
                            let _ = std::fs::remove_file(&tmp);
                            return Err(err.into());
                        }
                        writeback.wrote(&file, chunk.len() as u64);
                    }
                    Some(None) => break,
                    None => {
                        drop(file);
                        let _ = std::fs::remove_file(&tmp);
                        return Err(Error::Internal("request body abandoned".into()));
                    }
                }
            }
            commit_file(&root, &id, file)?;
            Ok(id)
        });
        Ok(FileWriter { chunks, done })
    }

    async fn send(&mut self, chunk: Bytes) -> Result<()> {
        if self.chunks.send(Some(chunk)).await.is_err() {
            // The writer ended early: its error says why.
            let (tx, _) = tokio::sync::mpsc::channel(1);
            drop(std::mem::replace(&mut self.chunks, tx));
            return match (&mut self.done).await {
                Ok(Err(err)) => Err(err),
                _ => Err(Error::Internal("object writer stopped".into())),
            };
        }
        Ok(())
    }

    async fn finish(self) -> Result<String> {
        if self.chunks.send(None).await.is_err() {
            return match self.done.await {
                Ok(Err(err)) => Err(err),
                _ => Err(Error::Internal("object writer stopped".into())),
            };
        }
        drop(self.chunks);
        self.done
            .await
            .map_err(|e| Error::Internal(format!("object writer failed: {e}")))?
    }
}
