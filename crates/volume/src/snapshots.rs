//! The snapshot store: volume images cut into fixed-size chunks, stored
//! once each by content.
//!
//! A snapshot is a manifest listing, for every 1 MiB chunk of the image,
//! either nothing (the chunk is a hole or all zeros) or the sha256 of its
//! content. Chunks are zstd-compressed and stored under their digest, so a
//! chunk shared by many snapshots (or volumes) is stored once: N daily
//! snapshots of a mostly unchanged volume cost one copy plus the changed
//! chunks. Holes are found with `SEEK_DATA` and never read.
//!
//! Storage goes through [`Objects`], whose four operations (put, get,
//! list, delete of immutable keyed blobs) are exactly S3's PutObject,
//! GetObject, ListObjectsV2 and DeleteObject, so the store can move to
//! roost's S3 object store without changing its format.

use crate::disk::{data_ranges, BLOCK_SIZE};
use crate::error::{Result, VolumeError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Chunk size: small enough that a day's changes to a volume touch few
/// chunks, large enough that a 10 GiB manifest stays around 10k entries.
pub const CHUNK_SIZE: u64 = 1 << 20;

/// zstd level: level 1 compresses filesystem data almost as well as 3 at
/// twice the speed, and snapshots run while the volume is frozen.
const ZSTD_LEVEL: i32 = 1;

const MANIFEST_FORMAT: u32 = 1;

/// What a snapshot records.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    /// Length of the image in bytes.
    size: u64,
    chunk_size: u64,
    /// Per chunk, the hex sha256 of its content, or `None` for zeros.
    chunks: Vec<Option<String>>,
    /// Compressed bytes of the distinct chunks listed.
    stored_bytes: u64,
}

/// Facts about a snapshot, as the store reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// sha256 of the manifest: identifies the exact content.
    pub digest: String,
    /// Length of the snapshotted image (the volume's size) in bytes.
    pub volume_size: u64,
    /// Compressed bytes of the chunks it references (what a restore reads).
    pub stored_bytes: u64,
    /// Bytes this snapshot added to the store (chunks no one had before).
    pub new_bytes: u64,
}

/// Immutable blobs under string keys, in a directory. Keys use `/` as a
/// separator, like S3's.
struct Objects {
    root: PathBuf,
}

impl Objects {
    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn exists(&self, key: &str) -> bool {
        self.path(key).exists()
    }

    /// Writes `bytes` under `key` so that readers see all or nothing, even
    /// after a crash or power loss.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.put_unsynced(key, bytes)?;
        sync_all(&[path])
    }

    /// Writes `bytes` under `key` (all or nothing after a crash, but not
    /// yet durable: see [`sync_all`]) and returns its path. Many chunks
    /// are written this way and synced together, which costs one journal
    /// commit instead of one per chunk.
    fn put_unsynced(&self, key: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(VolumeError::at("create", dir))?;
        let tmp = path.with_extension("tmp");
        let file = File::create(&tmp).map_err(VolumeError::at("create", &tmp))?;
        file.write_all_at(bytes, 0)
            .map_err(VolumeError::at("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(VolumeError::at("rename", &tmp))?;
        Ok(path)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(VolumeError::io(
                format!("cannot read {}", path.display()),
                e,
            )),
        }
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(VolumeError::io(
                format!("cannot delete {}", path.display()),
                e,
            )),
        }
    }

    /// Keys under `prefix` (one directory level below it, as the store
    /// lays keys out), with their sizes.
    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let mut keys = Vec::new();
        let base = self.path(prefix);
        let mut dirs = vec![(base.clone(), prefix.to_string())];
        while let Some((dir, key_prefix)) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(VolumeError::io(format!("cannot list {}", dir.display()), e)),
            };
            for entry in entries {
                let entry = entry.map_err(VolumeError::at("list", &dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let key = format!("{key_prefix}/{name}");
                let meta = entry
                    .metadata()
                    .map_err(VolumeError::at("stat", &entry.path()))?;
                if meta.is_dir() {
                    dirs.push((entry.path(), key));
                } else {
                    keys.push((key, meta.len()));
                }
            }
        }
        Ok(keys)
    }
}

/// Makes `paths` and their directory entries durable.
fn sync_all(paths: &[PathBuf]) -> Result<()> {
    let mut dirs: Vec<&Path> = Vec::new();
    for path in paths {
        File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(VolumeError::at("fsync", path))?;
        if let Some(dir) = path.parent().filter(|d| !dirs.contains(d)) {
            dirs.push(dir);
        }
    }
    for dir in dirs {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(VolumeError::at("fsync", dir))?;
    }
    Ok(())
}

fn chunk_key(digest: &str) -> String {
    format!("chunks/{}/{digest}.zst", &digest[..2])
}

fn manifest_key(id: &str) -> String {
    format!("manifests/{id}.json")
}

/// Snapshot ids become object keys: only plain names are accepted.
fn check_id(id: &str) -> Result<()> {
    let plain = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        Ok(())
    } else {
        Err(VolumeError::Invalid(format!(
            "snapshot id {id:?} must be 1-64 ASCII letters, digits, '_' or '-'"
        )))
    }
}

/// A content-addressed, deduplicating store of volume snapshots.
pub struct SnapshotStore {
    objects: Objects,
    /// Held by writers and by garbage collection, so a chunk a new snapshot
    /// reuses cannot be collected before its manifest is written.
    write_lock: Mutex<()>,
}

impl SnapshotStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<SnapshotStore> {
        let root = dir.into();
        std::fs::create_dir_all(&root).map_err(VolumeError::at("create", &root))?;
        Ok(SnapshotStore {
            objects: Objects { root },
            write_lock: Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the current content of `image` as snapshot `id`. The caller
    /// keeps the image still (frozen or unmounted) for the duration.
    /// Taking the same snapshot again (after a crash) rewrites it.
    pub(crate) fn create(&self, id: &str, image: &Path) -> Result<SnapshotInfo> {
        check_id(id)?;
        let _guard = self.lock();
        let file = File::open(image).map_err(VolumeError::at("open", image))?;
        let size = file
            .metadata()
            .map_err(VolumeError::at("stat", image))?
            .len();
        let count = size.div_ceil(CHUNK_SIZE) as usize;
        let mut chunks: Vec<Option<String>> = vec![None; count];
        let mut has_data = vec![false; count];
        for (start, stop) in data_ranges(&file, size).map_err(VolumeError::at("scan", image))? {
            let first = (start / CHUNK_SIZE) as usize;
            let last = stop.div_ceil(CHUNK_SIZE) as usize;
            has_data[first..last.min(count)]
                .iter_mut()
                .for_each(|d| *d = true);
        }
        let mut buf = vec![0u8; CHUNK_SIZE as usize];
        let (mut stored_bytes, mut new_bytes) = (0, 0);
        let mut seen = HashSet::new();
        let mut written = Vec::new();
        for (index, slot) in chunks.iter_mut().enumerate() {
            if !has_data[index] {
                continue;
            }
            let offset = index as u64 * CHUNK_SIZE;
            let len = (size - offset).min(CHUNK_SIZE) as usize;
            file.read_exact_at(&mut buf[..len], offset)
                .map_err(VolumeError::at("read", image))?;
            let data = &buf[..len];
            if is_zero(data) {
                continue;
            }
            let digest = hex::encode(Sha256::digest(data));
            let key = chunk_key(&digest);
            let compressed_len = if self.objects.exists(&key) {
                std::fs::metadata(self.objects.path(&key))
                    .map_err(VolumeError::at("stat", &self.objects.path(&key)))?
                    .len()
            } else {
                let compressed = zstd::bulk::compress(data, ZSTD_LEVEL)
                    .map_err(|e| VolumeError::io("cannot compress a chunk", e))?;
                written.push(self.objects.put_unsynced(&key, &compressed)?);
                new_bytes += compressed.len() as u64;
                compressed.len() as u64
            };
            if seen.insert(digest.clone()) {
                stored_bytes += compressed_len;
            }
            *slot = Some(digest);
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            size,
            chunk_size: CHUNK_SIZE,
            chunks,
            stored_bytes,
        };
        // Every chunk is durable before the manifest that lists it.
        sync_all(&written)?;
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| VolumeError::Corrupt(format!("cannot encode manifest: {e}")))?;
        self.objects.put(&manifest_key(id), &bytes)?;
        tracing::info!(
            snapshot = id,
            size,
            stored_bytes,
            new_bytes,
            "snapshot stored"
        );
        Ok(SnapshotInfo {
            digest: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            volume_size: size,
            stored_bytes,
            new_bytes,
        })
    }

    fn manifest(&self, id: &str) -> Result<Manifest> {
        check_id(id)?;
        let bytes = self
            .objects
            .get(&manifest_key(id))?
            .ok_or_else(|| VolumeError::SnapshotNotFound(id.to_string()))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| VolumeError::Corrupt(format!("manifest of {id}: {e}")))?;
        if manifest.format != MANIFEST_FORMAT || manifest.chunk_size != CHUNK_SIZE {
            return Err(VolumeError::Corrupt(format!(
                "manifest of {id} has format {} and chunk size {}; this roost reads format {MANIFEST_FORMAT}",
                manifest.format, manifest.chunk_size
            )));
        }
        Ok(manifest)
    }

    /// Whether snapshot `id` exists, and the size of the volume it holds.
    pub fn volume_size(&self, id: &str) -> Result<u64> {
        Ok(self.manifest(id)?.size)
    }

    /// Writes snapshot `id` into a new sparse file at `dest` (replacing
    /// any): holes and zero blocks stay holes. Every chunk is checked
    /// against its digest.
    pub(crate) fn restore(&self, id: &str, dest: &Path) -> Result<u64> {
        let manifest = self.manifest(id)?;
        let file = File::create(dest).map_err(VolumeError::at("create", dest))?;
        file.set_len(manifest.size)
            .map_err(VolumeError::at("size", dest))?;
        for (index, digest) in manifest.chunks.iter().enumerate() {
            let Some(digest) = digest else { continue };
            let compressed = self.objects.get(&chunk_key(digest))?.ok_or_else(|| {
                VolumeError::Corrupt(format!("chunk {digest} of {id} is missing"))
            })?;
            let data = zstd::bulk::decompress(&compressed, CHUNK_SIZE as usize)
                .map_err(|e| VolumeError::Corrupt(format!("chunk {digest} of {id}: {e}")))?;
            if hex::encode(Sha256::digest(&data)) != *digest {
                return Err(VolumeError::Corrupt(format!(
                    "chunk {digest} of {id} does not match its digest"
                )));
            }
            write_sparse(&file, index as u64 * CHUNK_SIZE, &data)
                .map_err(VolumeError::at("write", dest))?;
        }
        file.sync_all().map_err(VolumeError::at("fsync", dest))?;
        Ok(manifest.size)
    }

    /// Deletes snapshot `id`'s manifest. Its chunks go at the next
    /// [`SnapshotStore::collect_garbage`]. Deleting a missing snapshot is fine.
    pub fn delete(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let _guard = self.lock();
        self.objects.delete(&manifest_key(id))
    }

    /// Deletes chunks no manifest references (and temporary files a crash
    /// left). Returns the bytes freed.
    pub fn collect_garbage(&self) -> Result<u64> {
        let _guard = self.lock();
        let mut referenced = HashSet::new();
        for (key, _) in self.objects.list("manifests")? {
            let Some(id) = key
                .strip_prefix("manifests/")
                .and_then(|k| k.strip_suffix(".json"))
            else {
                self.objects.delete(&key)?;
                continue;
            };
            for digest in self.manifest(id)?.chunks.into_iter().flatten() {
                referenced.insert(chunk_key(&digest));
            }
        }
        let mut freed = 0;
        for (key, len) in self.objects.list("chunks")? {
            if !referenced.contains(&key) {
                self.objects.delete(&key)?;
                freed += len;
            }
        }
        if freed > 0 {
            tracing::info!(freed, "snapshot chunks collected");
        }
        Ok(freed)
    }

    /// Bytes the store occupies on disk.
    pub fn disk_usage(&self) -> Result<u64> {
        use std::os::unix::fs::MetadataExt;
        let mut total = 0;
        for prefix in ["chunks", "manifests"] {
            for (key, _) in self.objects.list(prefix)? {
                let path = self.objects.path(&key);
                total += std::fs::metadata(&path)
                    .map_err(VolumeError::at("stat", &path))?
                    .blocks()
                    * 512;
            }
        }
        Ok(total)
    }
}

/// Whether `data` is all zeros; or-folds 64-byte blocks, which the
/// compiler vectorizes, instead of stopping at every byte.
fn is_zero(data: &[u8]) -> bool {
    let mut blocks = data.chunks_exact(64);
    blocks.all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
        && blocks.remainder().iter().all(|&b| b == 0)
}

/// Writes the non-zero filesystem blocks of `data` at `offset`; zero
/// blocks stay holes in the (new, sparse) file.
fn write_sparse(file: &File, offset: u64, data: &[u8]) -> std::io::Result<()> {
    let block = BLOCK_SIZE as usize;
    let mut run_start = None;
    let blocks = data.len().div_ceil(block);
    for i in 0..=blocks {
        let zero = i == blocks || is_zero(&data[i * block..((i + 1) * block).min(data.len())]);
        match (zero, run_start) {
            (false, None) => run_start = Some(i),
            (true, Some(start)) => {
                let end = (i * block).min(data.len());
                file.write_all_at(&data[start * block..end], offset + (start * block) as u64)?;
                run_start = None;
            }
            _ => {}
        }
    }
    Ok(())
}
