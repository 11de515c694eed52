//! Reading images out of import sources: OCI layout directories, oci-archive tarballs (a
//! layout in a tar) and docker-save tarballs (`manifest.json` plus layer tars), each also
//! accepted gzip-compressed.
//!
//! Both formats end in the same two calls a registry pull makes: `ingest_blob` for every layer,
//! then `register` with the manifest and config bytes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde::Deserialize;
use tempfile::NamedTempFile;

use crate::digest::Digest;
use crate::error::ImageError;
use crate::manifest::{
    self, Descriptor, Document, ImageManifest, MAX_DOCUMENT_SIZE, OCI_CONFIG, OCI_LAYER_TAR,
    OCI_MANIFEST,
};
use crate::reference;
use crate::unpack::relative;
use crate::ImageStore;

/// Index → index → manifest is the deepest real images go; more is refused, not followed.
const MAX_INDEX_DEPTH: usize = 4;
/// Symlinks between archive members (docker-save dedups layers that way) are followed this far.
const MAX_MEMBER_LINKS: usize = 16;

/// Reads the image in `source` into `store`'s blobs and returns the manifest and config bytes
/// to register.
pub(crate) fn read_image(
    store: &ImageStore,
    source: &Path,
    reference: &str,
    tmp: &Path,
) -> Result<(Vec<u8>, Vec<u8>), ImageError> {
    let source = Source::open(source, tmp)?;
    if source.has("oci-layout") && source.has("index.json") {
        from_layout(store, &source, reference::tag_of(reference))
    } else if source.has("manifest.json") {
        from_docker_save(store, &source, reference)
    } else {
        Err(source.unsupported(
            "it is not an OCI image layout (oci-layout and index.json), an oci-archive or a \
             docker-save tarball (manifest.json)",
        ))
    }
}

fn from_layout(
    store: &ImageStore,
    source: &Source,
    tag: &str,
) -> Result<(Vec<u8>, Vec<u8>), ImageError> {
    let index = source.read_document("index.json")?;
    let Document::Index(entries) = manifest::parse_document(&index, "OCI layout index.json")?
    else {
        return Err(ImageError::malformed(
            "OCI layout index.json",
            "it is not an image index",
        ));
    };
    let mut chosen = manifest::choose(&entries, tag, "OCI layout index.json")?.clone();
    for _ in 0..MAX_INDEX_DEPTH {
        let what = format!("manifest {}", chosen.digest);
        let bytes = source.read_blob(&chosen, &what)?;
        match manifest::parse_document(&bytes, &what)? {
            Document::Index(entries) => {
                chosen =
                    manifest::choose(&entries, tag, &format!("image index {}", chosen.digest))?
                        .clone();
            }
            Document::Image(image) => {
                let config = source.read_blob(&image.config, "image config")?;
                for layer in &image.layers {
                    let digest = layer.digest("layer descriptor")?;
                    if !store.has_blob(&digest) {
                        let (reader, _) = source.open_member(&blob_member(&digest))?;
                        store.ingest_blob(reader, &layer.digest, Some(layer.size))?;
                    }
                }
                return Ok((bytes, config));
            }
        }
    }
    Err(ImageError::malformed(
        "OCI layout index.json",
        format!("image indexes nest more than {MAX_INDEX_DEPTH} levels deep"),
    ))
}

/// One image of a docker-save `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// docker-save has no manifest of its own, so one is synthesized: an OCI image manifest (JSON
/// as serde writes [`ImageManifest`]: compact, fields in declaration order) whose config is
/// the saved config and whose layers are the saved tars as uncompressed OCI layers. Saved
/// layers are plain tars, so each one's digest is its diff_id, which also verifies it. The
/// image's digest is the sha256 of that manifest: the same archive always imports to the same
/// digest.
fn from_docker_save(
    store: &ImageStore,
    source: &Source,
    reference: &str,
) -> Result<(Vec<u8>, Vec<u8>), ImageError> {
    let what = "docker-save manifest.json";
    let saved: Vec<SavedImage> = serde_json::from_slice(&source.read_document("manifest.json")?)
        .map_err(|e| ImageError::malformed(what, e))?;
    let image = match saved.as_slice() {
        [only] => only,
        _ => saved
            .iter()
            .find(|image| {
                image
                    .repo_tags
                    .iter()
                    .flatten()
                    .any(|tag| reference::normalize_name(tag).is_ok_and(|tag| tag == reference))
            })
            .ok_or_else(|| {
                let tags: Vec<&str> = saved
                    .iter()
                    .flat_map(|image| image.repo_tags.iter().flatten())
                    .map(String::as_str)
                    .collect();
                ImageError::malformed(
                    what,
                    format!(
                        "it holds {} images and none is tagged '{reference}' (tags: {}); import \
                         under one of those names",
                        saved.len(),
                        tags.join(", ")
                    ),
                )
            })?,
    };
    let config = source.read_document(&image.config)?;
    let parsed = manifest::parse_config(&config, "docker-save image config")?;
    if parsed.diff_ids.len() != image.layers.len() {
        return Err(ImageError::malformed(
            what,
            format!(
                "it lists {} layers but the image config has {} diff_ids",
                image.layers.len(),
                parsed.diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::with_capacity(image.layers.len());
    for (path, diff_id) in image.layers.iter().zip(&parsed.diff_ids) {
        let (reader, size) = source.open_member(path)?;
        if !store.has_blob(diff_id) {
            store.ingest_blob(reader, &diff_id.to_string(), Some(size))?;
        }
        layers.push(descriptor(OCI_LAYER_TAR, diff_id, size));
    }
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST.to_owned(),
        config: descriptor(OCI_CONFIG, &Digest::of(&config), config.len() as u64),
        layers,
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| ImageError::malformed(what, e))?;
    Ok((bytes, config))
}

fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: digest.to_string(),
        size,
        platform: None,
        annotations: Default::default(),
    }
}

fn blob_member(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// An import source, opened: a directory, or an archive indexed by member name.
struct Source {
    path: PathBuf,
    kind: Kind,
}

enum Kind {
    Directory,
    Archive {
        file: File,
        members: HashMap<PathBuf, Member>,
        /// The decompressed copy of a gzip archive; deleted when the import ends.
        _spool: Option<NamedTempFile>,
    },
}

enum Member {
    File {
        offset: u64,
        size: u64,
    },
    /// A symlink or hardlink, as the archive-relative path it points to.
    Link(PathBuf),
}

impl Source {
    fn open(path: &Path, tmp: &Path) -> Result<Source, ImageError> {
        let meta = std::fs::metadata(path).map_err(|e| ImageError::UnsupportedFormat {
            path: path.to_owned(),
            reason: format!("it cannot be read ({e}); check the path"),
        })?;
        let mut source = Source {
            path: path.to_owned(),
            kind: Kind::Directory,
        };
        if meta.is_dir() {
            return Ok(source);
        }
        let file = File::open(path).map_err(|e| source.read_error(e))?;
        let mut magic = [0u8; 2];
        let sniffed = file
            .read_at(&mut magic, 0)
            .map_err(|e| source.read_error(e))?;
        let (file, spool) = if sniffed == 2 && magic == [0x1f, 0x8b] {
            let mut spool = NamedTempFile::with_prefix_in("archive-", tmp)
                .map_err(|e| ImageError::io("creating a temporary file for the archive", e))?;
            io::copy(&mut MultiGzDecoder::new(&file), spool.as_file_mut()).map_err(|e| {
                source.unsupported(&format!("it is gzip data that does not decompress ({e})"))
            })?;
            let file = spool.reopen().map_err(|e| source.read_error(e))?;
            (file, Some(spool))
        } else {
            (file, None)
        };
        let members = source.index(&file)?;
        source.kind = Kind::Archive {
            file,
            members,
            _spool: spool,
        };
        Ok(source)
    }

    /// Maps member names to where their data sits, so members can be read in any order
    /// without extracting the archive.
    fn index(&self, file: &File) -> Result<HashMap<PathBuf, Member>, ImageError> {
        let not_tar = |e: io::Error| {
            self.unsupported(&format!(
                "it is not a tar archive ({e}); expected an OCI layout directory, an oci-archive \
                 or a docker-save tarball"
            ))
        };
        let mut members = HashMap::new();
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries_with_seek().map_err(not_tar)? {
            let entry = entry.map_err(not_tar)?;
            let Ok(name) = entry
                .path()
                .map_err(drop)
                .and_then(|p| relative(&p).map_err(drop))
            else {
                continue;
            };
            let link = || -> Option<PathBuf> { Some(entry.link_name().ok()??.into_owned()) };
            let member = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink => match link() {
                    Some(target) => {
                        Member::Link(name.parent().unwrap_or(Path::new("")).join(target))
                    }
                    None => continue,
                },
                tar::EntryType::Link => match link() {
                    Some(target) => Member::Link(target),
                    None => continue,
                },
                _ => continue,
            };
            members.insert(name, member);
        }
        Ok(members)
    }

    fn has(&self, name: &str) -> bool {
        match &self.kind {
            Kind::Directory => self.path.join(name).exists(),
            Kind::Archive { members, .. } => members.contains_key(Path::new(name)),
        }
    }

    /// Opens the member at the source-relative `name`, which comes from the source's own
    /// metadata and so is checked to stay inside the source.
    fn open_member(&self, name: &str) -> Result<(Box<dyn Read + '_>, u64), ImageError> {
        let rel = relative(Path::new(name)).map_err(|reason| {
            self.unsupported(&format!(
                "it refers to member '{name}', which is unsafe: {reason}"
            ))
        })?;
        let missing = || self.unsupported(&format!("it has no member '{name}'"));
        match &self.kind {
            Kind::Directory => {
                let path = self.path.join(&rel);
                let file = File::open(&path).map_err(|_| missing())?;
                let size = file.metadata().map_err(|e| self.read_error(e))?.len();
                Ok((Box::new(file), size))
            }
            Kind::Archive { file, members, .. } => {
                let mut current = rel;
                for _ in 0..MAX_MEMBER_LINKS {
                    match members.get(&current).ok_or_else(missing)? {
                        Member::File { offset, size } => {
                            let reader = MemberReader {
                                file,
                                position: *offset,
                                end: offset + size,
                            };
                            return Ok((Box::new(reader), *size));
                        }
                        Member::Link(target) => current = normalize_lexically(target),
                    }
                }
                Err(self.unsupported(&format!("member '{name}' is a chain of too many links")))
            }
        }
    }

    /// Reads a small JSON document (index, manifest, config) whole.
    fn read_document(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let (reader, size) = self.open_member(name)?;
        if size > MAX_DOCUMENT_SIZE {
            return Err(self.unsupported(&format!(
                "member '{name}' is {size} bytes, more than the {MAX_DOCUMENT_SIZE} allowed for \
                 a JSON document"
            )));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        reader
            .take(MAX_DOCUMENT_SIZE)
            .read_to_end(&mut bytes)
            .map_err(|e| self.read_error(e))?;
        Ok(bytes)
    }

    /// Reads the small blob `descriptor` names and checks its size and digest.
    fn read_blob(&self, descriptor: &Descriptor, what: &str) -> Result<Vec<u8>, ImageError> {
        let digest = descriptor.digest(what)?;
        let bytes = self.read_document(&blob_member(&digest))?;
        if bytes.len() as u64 != descriptor.size {
            return Err(ImageError::SizeMismatch {
                digest: digest.to_string(),
                expected: descriptor.size,
                actual: bytes.len() as u64,
            });
        }
        let actual = Digest::of(&bytes);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: what.to_owned(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    fn unsupported(&self, reason: &str) -> ImageError {
        ImageError::UnsupportedFormat {
            path: self.path.clone(),
            reason: reason.to_owned(),
        }
    }

    fn read_error(&self, err: io::Error) -> ImageError {
        ImageError::io(format!("reading {}", self.path.display()), err)
    }
}

/// Resolves `.` and `..` without touching the filesystem; `..` never climbs above the archive
/// root.
fn normalize_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::Normal(part) => out.push(part),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Reads one archive member by position, so several members can be open at once.
struct MemberReader<'a> {
    file: &'a File,
    position: u64,
    end: u64,
}

impl Read for MemberReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.position).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}
