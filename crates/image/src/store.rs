use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::Instant;

use serde::Serialize;

use tempfile::NamedTempFile;

use crate::digest::{Digest, HashingReader};
use crate::error::ImageError;
use crate::manifest::{self, Document};
use crate::reference::{self, Lookup};
use crate::{import, unpack, user, Image};

/// A content-addressed image store rooted at one directory.
///
/// Cloning is cheap and clones share the store. One process owns a store root: `open` clears
/// `tmp/`, which would break an import running in another process.
#[derive(Debug, Clone)]
pub struct ImageStore {
    paths: Arc<Paths>,
    shared: Arc<Shared>,
}

/// Coordination between the threads using one store.
#[derive(Debug, Default)]
struct Shared {
    /// Imports and pulls hold it shared while they add content; [`ImageStore::prune`] holds it
    /// exclusively, so it never deletes a blob an unfinished ingestion is about to register.
    gc: RwLock<()>,
    /// Keys of work under way (a layer being downloaded and unpacked); see `single_flight`.
    flights: Mutex<HashSet<String>>,
    landed: Condvar,
}

/// What [`ImageStore::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PruneReport {
    /// Blobs (layers, configs, manifests) removed.
    pub blobs: usize,
    /// Unpacked layer directories removed.
    pub layers: usize,
    /// Bytes of the removed blobs.
    pub bytes: u64,
}

#[derive(Debug)]
struct Paths {
    root: PathBuf,
    blobs: PathBuf,
    layers: PathBuf,
    images: PathBuf,
    tmp: PathBuf,
}

impl ImageStore {
    /// Opens (creating if needed) a store rooted at `root` (e.g. `DATA_DIR/images`).
    ///
    /// Whatever is in `tmp/` belongs to imports that a crash interrupted; it is removed.
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageStore, ImageError> {
        let root = root.into();
        let paths = Paths {
            blobs: root.join("blobs/sha256"),
            layers: root.join("layers/sha256"),
            images: root.join("images"),
            tmp: root.join("tmp"),
            root,
        };
        for dir in [&paths.blobs, &paths.layers, &paths.images, &paths.tmp] {
            fs::create_dir_all(dir)
                .map_err(|e| ImageError::io(format!("creating {}", dir.display()), e))?;
        }
        // Layers keep their setuid files (an image's `su`): only root may
        // reach them, or any local user could run them as root.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&paths.root, fs::Permissions::from_mode(0o700))
            .map_err(|e| ImageError::io(format!("restricting {}", paths.root.display()), e))?;
        let stale = fs::read_dir(&paths.tmp)
            .map_err(|e| ImageError::io(format!("listing {}", paths.tmp.display()), e))?;
        for entry in stale {
            let path = entry
                .map_err(|e| ImageError::io(format!("listing {}", paths.tmp.display()), e))?
                .path();
            tracing::info!(path = %path.display(), "removing leftover of an interrupted import");
            let removed = match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            removed.map_err(|e| ImageError::io(format!("removing {}", path.display()), e))?;
        }
        Ok(ImageStore {
            paths: Arc::new(paths),
            shared: Arc::default(),
        })
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.paths.root
    }

    /// Imports an OCI image layout directory, an oci-archive tarball (a tar of a layout) or a
    /// docker-save tarball, optionally gzip-compressed, detected from the content. The image
    /// is stored under `name` (`repo[:tag]`, tag defaulting to `latest`), replacing any image
    /// of that name.
    ///
    /// A layout or index with several images yields the entry tagged like `name`, else the
    /// linux/amd64 one; the image's digest is then that platform manifest's digest. For
    /// docker-save, whose archives carry no manifest, the digest is that of a synthesized OCI
    /// manifest (see the crate docs).
    pub fn import(&self, source: &Path, name: &str) -> Result<Image, ImageError> {
        let reference = reference::normalize_name(name)?;
        let _adding = self.adding();
        let (manifest, config) = import::read_image(self, source, &reference, &self.paths.tmp)?;
        self.register(&reference, &manifest, &config)
    }

    /// Stores one blob from `reader`, verifying that it hashes to `expected_digest` and, when
    /// given, has `expected_size` bytes. Content that does not match is discarded and nothing
    /// is stored. A blob already in the store is not read again.
    ///
    /// This is the first half of every ingestion path, imports and registry pulls alike:
    /// ingest each layer blob, then [`ImageStore::register`] the manifest.
    pub fn ingest_blob(
        &self,
        reader: impl Read,
        expected_digest: &str,
        expected_size: Option<u64>,
    ) -> Result<(), ImageError> {
        let digest = Digest::parse(expected_digest)
            .map_err(|reason| ImageError::malformed("blob digest", reason))?;
        if self.has_blob(&digest) {
            return Ok(());
        }
        let mut temp = self.temp_file("blob-")?;
        // One byte past the expected size is enough to know the blob is too long.
        let limit = expected_size.map_or(u64::MAX, |size| size.saturating_add(1));
        let mut hashing = HashingReader::new(reader.take(limit));
        io::copy(&mut hashing, temp.as_file_mut())
            .map_err(|e| ImageError::io(format!("reading blob {digest}"), e))?;
        let (actual, size) = hashing
            .finish()
            .map_err(|e| ImageError::io(format!("reading blob {digest}"), e))?;
        if let Some(expected) = expected_size.filter(|&expected| expected != size) {
            return Err(ImageError::SizeMismatch {
                digest: digest.to_string(),
                expected,
                actual: size,
            });
        }
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("blob {digest}"),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        self.commit_file(temp, &self.blob_path(&digest))
    }

    /// Records `manifest` (an image manifest, not an index) as `reference`, after unpacking
    /// its layers. `config` is the image config blob; its digest must match the manifest's
    /// config descriptor. Every layer blob must already be in the store (see
    /// [`ImageStore::ingest_blob`]); each is unpacked once, however many images share it.
    ///
    /// The record is written last, so an image is listed only once it is complete.
    pub fn register(
        &self,
        reference: &str,
        manifest: &[u8],
        config: &[u8],
    ) -> Result<Image, ImageError> {
        let reference = reference::normalize_name(reference)?;
        self.register_as(&reference, manifest, config)
    }

    /// [`ImageStore::register`] under a record name already validated: a normalized `repo:tag`,
    /// or `repo@digest` for an image pulled by digest.
    pub(crate) fn register_as(
        &self,
        reference: &str,
        manifest: &[u8],
        config: &[u8],
    ) -> Result<Image, ImageError> {
        let reference = reference.to_owned();
        let digest = Digest::of(manifest);
        let Document::Image(image_manifest) = manifest::parse_document(manifest, "image manifest")?
        else {
            return Err(ImageError::malformed(
                "image manifest",
                "it is an image index; register the platform manifest chosen from it",
            ));
        };
        let config_descriptor = &image_manifest.config;
        let config_digest = config_descriptor.digest("config descriptor")?;
        let actual = Digest::of(config);
        if actual != config_digest {
            return Err(ImageError::DigestMismatch {
                what: "image config".to_owned(),
                expected: config_digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let parsed = manifest::parse_config(config, "image config")?;
        let layers = &image_manifest.layers;
        if parsed.diff_ids.len() != layers.len() {
            return Err(ImageError::malformed(
                "image config",
                format!(
                    "it lists {} diff_ids but the manifest has {} layers",
                    parsed.diff_ids.len(),
                    layers.len()
                ),
            ));
        }
        let layer_digests = layers
            .iter()
            .map(|layer| layer.digest("layer descriptor"))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(missing) = layer_digests.iter().find(|d| !self.has_blob(d)) {
            return Err(ImageError::MissingBlob {
                digest: missing.to_string(),
                reason: "ingest every layer blob before registering its manifest".to_owned(),
            });
        }
        self.ingest_blob(
            config,
            &config_digest.to_string(),
            Some(config_descriptor.size),
        )?;
        self.ingest_blob(manifest, &digest.to_string(), None)?;
        for (i, (layer, diff_id)) in layer_digests.iter().zip(&parsed.diff_ids).enumerate() {
            self.unpack(
                layer,
                diff_id,
                &format!("{layer} ({} of {})", i + 1, layers.len()),
            )?;
        }
        if let Ok(existing) = self.get(&reference) {
            if existing.digest == digest.to_string() {
                return Ok(existing);
            }
        }
        let image = Image {
            reference: reference.clone(),
            digest: digest.to_string(),
            config: parsed.config,
            layers: layer_digests.iter().map(Digest::to_string).collect(),
            size: layers.iter().map(|layer| layer.size).sum(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let record = serde_json::to_vec_pretty(&image)
            .map_err(|e| ImageError::io("serializing the image record", io::Error::other(e)))?;
        let mut temp = self.temp_file("record-")?;
        temp.write_all(&record)
            .map_err(|e| ImageError::io("writing the image record", e))?;
        self.commit_file(temp, &self.record_path(&reference))?;
        tracing::info!(reference = %image.reference, digest = %image.digest, "image registered");
        Ok(image)
    }

    /// All images, sorted by reference. Unreadable records are skipped with a warning so one
    /// damaged file cannot hide every other image.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let dir = &self.paths.images;
        let entries = fs::read_dir(dir)
            .map_err(|e| ImageError::io(format!("listing {}", dir.display()), e))?;
        let mut images = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| ImageError::io(format!("listing {}", dir.display()), e))?
                .path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            match read_record(&path) {
                Ok(image) => images.push(image),
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "skipping unreadable image record")
                }
            }
        }
        images.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(images)
    }

    /// Finds an image by `name:tag`, `name` (meaning `name:latest`), `name@sha256:...` or a
    /// bare manifest digest `sha256:...` (the first reference with that digest).
    pub fn get(&self, reference: &str) -> Result<Image, ImageError> {
        let not_found = || ImageError::NotFound {
            reference: reference.to_owned(),
        };
        match reference::parse(reference)? {
            Lookup::Tagged(name) => {
                let path = self.record_path(&name);
                if !path.exists() {
                    return Err(not_found());
                }
                read_record(&path)
            }
            Lookup::Pinned { repo, digest } => {
                let pulled = self.record_path(&format!("{repo}@{digest}"));
                if pulled.exists() {
                    return read_record(&pulled);
                }
                self.list()?
                    .into_iter()
                    .find(|image| {
                        reference::repo_of(&image.reference) == repo
                            && image.digest == digest.to_string()
                    })
                    .ok_or_else(not_found)
            }
            Lookup::Digest(digest) => self
                .list()?
                .into_iter()
                .find(|image| image.digest == digest.to_string())
                .ok_or_else(not_found),
        }
    }

    /// The unpacked layer directories of `image`, lowest first, each usable as an overlayfs
    /// lowerdir (overlayfs lists lowerdirs topmost first, so reverse them for the mount).
    pub fn layer_paths(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        image
            .layers
            .iter()
            .map(|layer| {
                let digest = Digest::parse(layer)
                    .map_err(|reason| ImageError::malformed("image record layer digest", reason))?;
                let path = self.paths.layers.join(digest.hex());
                if path.is_dir() {
                    Ok(path)
                } else {
                    Err(ImageError::MissingBlob {
                        digest: layer.clone(),
                        reason: format!(
                            "the unpacked layer of image '{}' is not in the store; import the image again",
                            image.reference
                        ),
                    })
                }
            })
            .collect()
    }

    /// Resolves an image config `User` (`name`, `uid`, `uid:gid`, `name:group`, `uid:group`,
    /// `name:gid`) to `(uid, gid)` using the image's own `/etc/passwd` and `/etc/group`.
    pub fn resolve_user(&self, image: &Image, user: &str) -> Result<(u32, u32), ImageError> {
        let layers = self.layer_paths(image)?;
        user::resolve(&layers, user).map_err(|reason| ImageError::User {
            image: image.reference.clone(),
            user: user.to_owned(),
            reason,
        })
    }

    /// Removes the record of `reference` (any form [`ImageStore::get`] takes) and returns it.
    /// Its blobs and layers stay, shared with other images, until [`ImageStore::prune`].
    pub fn remove(&self, reference: &str) -> Result<Image, ImageError> {
        let image = self.get(reference)?;
        let path = self.record_path(&image.reference);
        fs::remove_file(&path)
            .map_err(|e| ImageError::io(format!("removing {}", path.display()), e))?;
        sync_dir(&self.paths.images)?;
        tracing::info!(reference = %image.reference, "image removed");
        Ok(image)
    }

    /// Removes every blob and unpacked layer that no image record references, except layers
    /// in `keep` (`sha256:<hex>` digests, e.g. of layers machines still run on after their
    /// image was removed or re-tagged).
    ///
    /// A layer directory is renamed into `tmp/` before it is deleted, so a prune cut short
    /// never leaves a partial layer where a machine could mount it.
    pub fn prune(&self, keep: &HashSet<String>) -> Result<PruneReport, ImageError> {
        let _exclusive = self
            .shared
            .gc
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut referenced: HashSet<String> = keep
            .iter()
            .filter_map(|d| Digest::parse(d).ok())
            .map(|d| d.hex().to_owned())
            .collect();
        for image in self.list()? {
            let manifest = Digest::parse(&image.digest)
                .map_err(|reason| ImageError::malformed("image record digest", reason))?;
            if let Some(config) = self.config_digest(&manifest) {
                referenced.insert(config.hex().to_owned());
            }
            referenced.insert(manifest.hex().to_owned());
            for layer in &image.layers {
                let layer = Digest::parse(layer)
                    .map_err(|reason| ImageError::malformed("image record layer digest", reason))?;
                referenced.insert(layer.hex().to_owned());
            }
        }
        let mut report = PruneReport::default();
        for (name, path) in self.unreferenced(&self.paths.blobs, &referenced)? {
            let size = fs::symlink_metadata(&path).map_or(0, |m| m.len());
            fs::remove_file(&path)
                .map_err(|e| ImageError::io(format!("removing {}", path.display()), e))?;
            tracing::debug!(blob = %name, "pruned blob");
            report.blobs += 1;
            report.bytes += size;
        }
        for (name, path) in self.unreferenced(&self.paths.layers, &referenced)? {
            let doomed = self.paths.tmp.join(format!("prune-{name}"));
            fs::rename(&path, &doomed)
                .map_err(|e| ImageError::io(format!("moving {} aside", path.display()), e))?;
            fs::remove_dir_all(&doomed)
                .map_err(|e| ImageError::io(format!("removing {}", doomed.display()), e))?;
            tracing::debug!(layer = %name, "pruned layer");
            report.layers += 1;
        }
        sync_dir(&self.paths.blobs)?;
        sync_dir(&self.paths.layers)?;
        tracing::info!(
            blobs = report.blobs,
            layers = report.layers,
            bytes = report.bytes,
            "image store pruned"
        );
        Ok(report)
    }

    /// The config digest named by a stored manifest, if it can be read.
    fn config_digest(&self, manifest: &Digest) -> Option<Digest> {
        let bytes = fs::read(self.blob_path(manifest)).ok()?;
        match manifest::parse_document(&bytes, "stored manifest").ok()? {
            Document::Image(image) => image.config.digest("config descriptor").ok(),
            Document::Index(_) => None,
        }
    }

    /// Entries of `dir` whose names are not in `referenced`.
    fn unreferenced(
        &self,
        dir: &Path,
        referenced: &HashSet<String>,
    ) -> Result<Vec<(String, PathBuf)>, ImageError> {
        let entries = fs::read_dir(dir)
            .map_err(|e| ImageError::io(format!("listing {}", dir.display()), e))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| ImageError::io(format!("listing {}", dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !referenced.contains(&name) {
                found.push((name, entry.path()));
            }
        }
        Ok(found)
    }

    /// Held by every ingestion for its whole length; see `Shared::gc`.
    pub(crate) fn adding(&self) -> RwLockReadGuard<'_, ()> {
        self.shared
            .gc
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` unless another thread is running work under the same `key`; then it waits
    /// for that to end and runs `work` itself, which finds the other thread's result in the
    /// store (or, if the other failed, tries again). So concurrent pulls of one layer download
    /// and unpack it once.
    pub(crate) fn single_flight<T>(
        &self,
        key: &str,
        work: impl FnOnce() -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        let mut flights = self
            .shared
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while flights.contains(key) {
            flights = self
                .shared
                .landed
                .wait(flights)
                .unwrap_or_else(PoisonError::into_inner);
        }
        flights.insert(key.to_owned());
        drop(flights);
        // Landing happens in a guard so that a panicking `work` cannot strand the waiters.
        struct Landing<'a>(&'a Shared, &'a str);
        impl Drop for Landing<'_> {
            fn drop(&mut self) {
                let mut flights = self
                    .0
                    .flights
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                flights.remove(self.1);
                self.0.landed.notify_all();
            }
        }
        let _landing = Landing(&self.shared, key);
        work()
    }

    /// Whether a layer is unpacked in the store.
    pub(crate) fn has_layer(&self, layer: &Digest) -> bool {
        self.paths.layers.join(layer.hex()).is_dir()
    }

    pub(crate) fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.paths.blobs.join(digest.hex())
    }

    /// One file per reference; characters outside `[a-z0-9._-]` are %-escaped so `/` and `:`
    /// cannot form paths.
    fn record_path(&self, reference: &str) -> PathBuf {
        let mut name = String::with_capacity(reference.len() + 5);
        for byte in reference.bytes() {
            if byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"._-".contains(&byte) {
                name.push(char::from(byte));
            } else {
                name.push_str(&format!("%{byte:02X}"));
            }
        }
        name.push_str(".json");
        self.paths.images.join(name)
    }

    /// Unpacks a layer blob into `layers/` unless it is already there. The work happens in
    /// `tmp/`, is flushed to disk, then renamed into place: a layer directory exists at its
    /// final path only when it is complete.
    pub(crate) fn unpack(
        &self,
        layer: &Digest,
        diff_id: &Digest,
        name: &str,
    ) -> Result<(), ImageError> {
        let target = self.paths.layers.join(layer.hex());
        if target.is_dir() {
            tracing::debug!(layer = %layer, "layer already unpacked");
            return Ok(());
        }
        let started = Instant::now();
        let temp = tempfile::Builder::new()
            .prefix("layer-")
            .tempdir_in(&self.paths.tmp)
            .map_err(|e| ImageError::io("creating a temporary layer directory", e))?;
        unpack::unpack_layer(&self.blob_path(layer), diff_id, temp.path(), name)?;
        let dir = File::open(temp.path())
            .map_err(|e| ImageError::io(format!("opening {}", temp.path().display()), e))?;
        nix::unistd::syncfs(dir.as_raw_fd())
            .map_err(|e| ImageError::io("flushing the unpacked layer to disk", e))?;
        let unpacked = temp.keep();
        match fs::rename(&unpacked, &target) {
            Ok(()) => {}
            // Another import unpacked the same layer meanwhile; its copy is as good as ours.
            Err(_) if target.is_dir() => {
                fs::remove_dir_all(&unpacked)
                    .map_err(|e| ImageError::io(format!("removing {}", unpacked.display()), e))?;
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&unpacked);
                return Err(ImageError::io(
                    format!("moving the unpacked layer to {}", target.display()),
                    e,
                ));
            }
        }
        sync_dir(&self.paths.layers)?;
        tracing::info!(layer = %layer, elapsed_ms = started.elapsed().as_millis() as u64, "layer unpacked");
        Ok(())
    }

    fn temp_file(&self, prefix: &str) -> Result<NamedTempFile, ImageError> {
        NamedTempFile::with_prefix_in(prefix, &self.paths.tmp).map_err(|e| {
            ImageError::io(
                format!("creating a file in {}", self.paths.tmp.display()),
                e,
            )
        })
    }

    /// Makes `temp` durable and renames it to `target` (temp file + fsync + rename + fsync of
    /// the directory), so readers see the old content or the new, never a torn file.
    fn commit_file(&self, temp: NamedTempFile, target: &Path) -> Result<(), ImageError> {
        temp.as_file()
            .sync_all()
            .map_err(|e| ImageError::io(format!("flushing {}", temp.path().display()), e))?;
        temp.persist(target)
            .map_err(|e| ImageError::io(format!("writing {}", target.display()), e.error))?;
        sync_dir(target.parent().unwrap_or(&self.paths.root))
    }
}

fn read_record(path: &Path) -> Result<Image, ImageError> {
    let bytes =
        fs::read(path).map_err(|e| ImageError::io(format!("reading {}", path.display()), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ImageError::malformed(format!("image record {}", path.display()), e))
}

fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImageError::io(format!("flushing directory {}", dir.display()), e))
}
