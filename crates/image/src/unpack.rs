//! Unpacking one layer tarball into a directory that overlayfs can use as a lowerdir.
//!
//! Layers are hostile input. The rules, checked per entry:
//! - a path must be relative and free of `..`; it is rebuilt from its normal components only;
//! - no symlink is ever followed: every parent of an entry must be a real directory created
//!   by this layer (checked with `lstat`), final components are replaced rather than written
//!   through, and files are opened with `O_NOFOLLOW | O_EXCL`;
//! - a hardlink may only point at a regular file this layer already wrote, reached through
//!   real directories;
//! - device nodes and fifos are skipped: the runtime provides `/dev`;
//! - a GNU sparse file may claim a size far beyond its data (a few bytes can say "1 TiB"), so
//!   sparse entries over [`MAX_SPARSE_FILE_SIZE`] are refused, and every file is written with
//!   its all-zero blocks left as holes, so zeros (sparse or merely well-compressed) cost no disk.
//!
//! OCI whiteouts become overlayfs whiteouts: `.wh.NAME` a 0:0 character device `NAME`,
//! `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use flate2::read::MultiGzDecoder;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};
use tar::EntryType;

use crate::digest::{Digest, HashingReader};
use crate::error::ImageError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Largest size a GNU sparse entry may claim. Real images' sparse files (`lastlog`, database
/// preallocations) are far smaller; a larger claim is a layer trying to exhaust time or disk.
pub(crate) const MAX_SPARSE_FILE_SIZE: u64 = 4 << 30;
/// Files are copied in blocks of this size; an all-zero block becomes a hole.
const COPY_BLOCK: usize = 64 << 10;

/// Unpacks the layer blob at `blob` into the existing empty directory `dest`, and checks that
/// the uncompressed stream hashes to `diff_id`.
///
/// `name` identifies the layer in errors. On error `dest` holds partial content; the caller
/// unpacks into a temporary directory and discards it.
pub(crate) fn unpack_layer(
    blob: &Path,
    diff_id: &Digest,
    dest: &Path,
    name: &str,
) -> Result<(), ImageError> {
    let file = File::open(blob)
        .map_err(|e| ImageError::io(format!("opening layer blob {}", blob.display()), e))?;
    let mut input = BufReader::new(file);
    let magic = input
        .fill_buf()
        .map_err(|e| ImageError::io(format!("reading layer blob {}", blob.display()), e))?;
    let stream: Box<dyn Read> = match magic {
        [0x1f, 0x8b, ..] => Box::new(MultiGzDecoder::new(input)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(
            zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| ImageError::io(format!("starting zstd for layer {name}"), e))?,
        ),
        [0xfd, b'7', b'z', b'X', b'Z', ..] => return Err(unsupported(name, "xz")),
        [b'B', b'Z', b'h', ..] => return Err(unsupported(name, "bzip2")),
        _ => Box::new(input),
    };
    let mut hashed = HashingReader::new(stream);
    let mut unpacker = Unpacker {
        root: dest,
        layer: name,
        dir_times: Vec::new(),
    };
    fs::set_permissions(dest, Permissions::from_mode(0o755))
        .map_err(|e| ImageError::io(format!("setting mode of {}", dest.display()), e))?;
    let mut archive = tar::Archive::new(&mut hashed);
    let entries = archive.entries().map_err(|e| corrupt(name, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(name, e))?;
        unpacker.entry(&mut entry)?;
    }
    unpacker.finish()?;
    let (actual, _) = hashed.finish().map_err(|e| corrupt(name, e))?;
    if &actual != diff_id {
        return Err(ImageError::DigestMismatch {
            what: format!("uncompressed content of layer {name}"),
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

fn unsupported(layer: &str, compression: &str) -> ImageError {
    ImageError::malformed(
        format!("layer {layer}"),
        format!("it is {compression}-compressed; roost unpacks gzip, zstd and uncompressed layers"),
    )
}

fn corrupt(layer: &str, err: io::Error) -> ImageError {
    ImageError::malformed(
        format!("layer {layer}"),
        format!("it is not a readable tar stream ({err})"),
    )
}

struct Unpacker<'a> {
    root: &'a Path,
    layer: &'a str,
    /// Directory mtimes are applied last: creating children would change them again.
    dir_times: Vec<(PathBuf, TimeSpec)>,
}

/// Ownership, permissions and mtime from an entry header.
struct Attributes {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: TimeSpec,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ImageError> {
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = entry
            .path()
            .map_err(|e| self.unsafe_entry(&shown, e.to_string()))?;
        let rel = relative(&path).map_err(|reason| self.unsafe_entry(&shown, reason))?;
        let kind = entry.header().entry_type();
        let file_name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if file_name == OPAQUE_MARKER {
            return self.opaque(&rel, &shown);
        }
        if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
            if matches!(hidden, "" | "." | "..") {
                return Err(self.unsafe_entry(&shown, "the whiteout does not name a file"));
            }
            return self.whiteout(&rel.with_file_name(hidden), &shown);
        }
        match kind {
            EntryType::XGlobalHeader | EntryType::XHeader => return Ok(()),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                tracing::warn!(layer = self.layer, entry = %shown, "skipping device node or fifo: containers get /dev from the runtime");
                return Ok(());
            }
            _ => {}
        }
        let attributes = self.attributes(entry.header(), &shown)?;
        if rel.as_os_str().is_empty() {
            return match kind {
                EntryType::Directory => self.directory(self.root.to_path_buf(), &attributes),
                _ => Err(self.unsafe_entry(&shown, "a non-directory entry names the layer root")),
            };
        }
        if kind == EntryType::GNUSparse {
            let size = entry
                .header()
                .size()
                .map_err(|e| self.unsafe_entry(&shown, e.to_string()))?;
            if size > MAX_SPARSE_FILE_SIZE {
                return Err(self.unsafe_entry(
                    &shown,
                    format!(
                        "it is a sparse file claiming {size} bytes, over the limit of \
                         {MAX_SPARSE_FILE_SIZE}"
                    ),
                ));
            }
        }
        let target = self.prepare(&rel, &shown, kind == EntryType::Directory)?;
        match kind {
            EntryType::Directory => self.directory(target, &attributes),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(entry, &target, &attributes)
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| self.unsafe_entry(&shown, e.to_string()))?
                    .ok_or_else(|| self.unsafe_entry(&shown, "symlink without a target"))?;
                std::os::unix::fs::symlink(&link, &target).map_err(|e| self.io(&target, e))?;
                self.set_owner_and_time(&target, &attributes)
            }
            EntryType::Link => self.hardlink(entry, &target, &shown),
            other => {
                tracing::warn!(layer = self.layer, entry = %shown, kind = ?other, "skipping tar entry of unsupported type");
                Ok(())
            }
        }
    }

    /// Applies the deferred directory mtimes.
    fn finish(self) -> Result<(), ImageError> {
        for (dir, mtime) in self.dir_times.iter().rev() {
            utimensat(None, dir, mtime, mtime, UtimensatFlags::NoFollowSymlink)
                .map_err(|e| self.io(dir, e))?;
        }
        Ok(())
    }

    fn attributes(&self, header: &tar::Header, shown: &str) -> Result<Attributes, ImageError> {
        let field = |value: io::Result<u64>, name: &str| {
            value
                .ok()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| self.unsafe_entry(shown, format!("invalid {name} in tar header")))
        };
        let mtime = header
            .mtime()
            .ok()
            .and_then(|t| i64::try_from(t).ok())
            .ok_or_else(|| self.unsafe_entry(shown, "invalid mtime in tar header"))?;
        Ok(Attributes {
            uid: field(header.uid(), "uid")?,
            gid: field(header.gid(), "gid")?,
            mode: header
                .mode()
                .map_err(|_| self.unsafe_entry(shown, "invalid mode in tar header"))?
                & 0o7777,
            mtime: TimeSpec::new(mtime, 0),
        })
    }

    /// Makes sure every parent of `rel` is a real directory (creating missing ones) and clears
    /// what an earlier entry left at `rel` itself (a later entry replaces an earlier one, as
    /// with tar; a directory is kept when `keep_dir`, so its contents merge). Returns the
    /// absolute path to write.
    fn prepare(&self, rel: &Path, shown: &str, keep_dir: bool) -> Result<PathBuf, ImageError> {
        let target = self.root.join(rel);
        if let Some(parent) = rel.parent() {
            self.ensure_dirs(parent, shown)?;
        }
        let cleared = match fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() && keep_dir => Ok(()),
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&target),
            Ok(_) => fs::remove_file(&target),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        cleared.map_err(|e| self.io(&target, e))?;
        Ok(target)
    }

    /// Walks `rel` from the layer root without following anything: each component must be a
    /// directory, or absent (then it is created 0755, as tar does for implied parents).
    fn ensure_dirs(&self, rel: &Path, shown: &str) -> Result<(), ImageError> {
        let mut current = self.root.to_path_buf();
        for component in rel.components() {
            current.push(component);
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) => {
                    let what = if meta.file_type().is_symlink() {
                        "a symlink"
                    } else {
                        "not a directory"
                    };
                    let parent = current.strip_prefix(self.root).unwrap_or(&current);
                    return Err(self.unsafe_entry(
                        shown,
                        format!("its parent '{}' is {what} in this layer; entries are never written through symlinks", parent.display()),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&current).map_err(|e| self.io(&current, e))?;
                    fs::set_permissions(&current, Permissions::from_mode(0o755))
                        .map_err(|e| self.io(&current, e))?;
                }
                Err(e) => return Err(self.io(&current, e)),
            }
        }
        Ok(())
    }

    fn directory(&mut self, path: PathBuf, attributes: &Attributes) -> Result<(), ImageError> {
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(self.io(&path, e)),
        }
        chown(&path, attributes).map_err(|e| self.io(&path, e))?;
        fs::set_permissions(&path, Permissions::from_mode(attributes.mode))
            .map_err(|e| self.io(&path, e))?;
        self.dir_times.push((path, attributes.mtime));
        Ok(())
    }

    fn file<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
        attributes: &Attributes,
    ) -> Result<(), ImageError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(path)
            .map_err(|e| self.io(path, e))?;
        copy_sparse(entry, &mut file).map_err(|e| match e {
            CopyError::Read(e) => corrupt(self.layer, e),
            CopyError::Write(e) => self.io(path, e),
        })?;
        // chown clears setuid/setgid bits, so the mode is set after it.
        chown(path, attributes).map_err(|e| self.io(path, e))?;
        file.set_permissions(Permissions::from_mode(attributes.mode))
            .map_err(|e| self.io(path, e))?;
        drop(file);
        set_mtime(path, attributes).map_err(|e| self.io(path, e))
    }

    fn hardlink<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        path: &Path,
        shown: &str,
    ) -> Result<(), ImageError> {
        let link = entry
            .link_name()
            .map_err(|e| self.unsafe_entry(shown, e.to_string()))?
            .ok_or_else(|| self.unsafe_entry(shown, "hardlink without a target"))?;
        let link_rel = relative(&link).map_err(|reason| {
            self.unsafe_entry(
                shown,
                format!("hardlink target '{}': {reason}", link.display()),
            )
        })?;
        let not_earlier_file = || {
            self.unsafe_entry(
                shown,
                format!(
                    "hardlink target '{}' is not a regular file earlier in this layer",
                    link.display()
                ),
            )
        };
        if let Some(parent) = link_rel.parent() {
            self.check_real_dirs(parent).ok_or_else(not_earlier_file)?;
        }
        let source = self.root.join(&link_rel);
        if !fs::symlink_metadata(&source).is_ok_and(|m| m.is_file()) {
            return Err(not_earlier_file());
        }
        // link(2) does not follow a symlink in its last component; parents were checked above.
        fs::hard_link(&source, path).map_err(|e| self.io(path, e))
    }

    /// `Some` if every component of `rel` is a real directory of this layer.
    fn check_real_dirs(&self, rel: &Path) -> Option<()> {
        let mut current = self.root.to_path_buf();
        for component in rel.components() {
            current.push(component);
            if !fs::symlink_metadata(&current).ok()?.is_dir() {
                return None;
            }
        }
        Some(())
    }

    fn whiteout(&self, hidden: &Path, shown: &str) -> Result<(), ImageError> {
        let target = self.prepare(hidden, shown, false)?;
        mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|e| self.io(&target, e))
    }

    fn opaque(&self, marker: &Path, shown: &str) -> Result<(), ImageError> {
        let dir = marker.parent().unwrap_or(Path::new(""));
        self.ensure_dirs(dir, shown)?;
        let path = self.root.join(dir);
        xattr::set(&path, OPAQUE_XATTR, b"y").map_err(|e| self.io(&path, e))
    }

    fn set_owner_and_time(&self, path: &Path, attributes: &Attributes) -> Result<(), ImageError> {
        chown(path, attributes)
            .and_then(|()| set_mtime(path, attributes))
            .map_err(|e| self.io(path, e))
    }

    fn unsafe_entry(&self, shown: &str, reason: impl Into<String>) -> ImageError {
        ImageError::UnsafeLayerEntry {
            layer: self.layer.to_owned(),
            path: shown.to_owned(),
            reason: reason.into(),
        }
    }

    fn io(&self, path: &Path, err: impl Into<io::Error>) -> ImageError {
        ImageError::io(
            format!("unpacking layer {} at {}", self.layer, path.display()),
            err,
        )
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `reader` into the empty `file`, seeking over all-zero blocks instead of writing them
/// so they stay holes.
fn copy_sparse(reader: &mut impl Read, file: &mut File) -> Result<(), CopyError> {
    let mut block = vec![0u8; COPY_BLOCK];
    let mut length = 0u64;
    loop {
        let mut filled = 0;
        while filled < block.len() {
            match reader.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CopyError::Read(e)),
            }
        }
        if filled == 0 {
            break;
        }
        let data = &block[..filled];
        if data.iter().all(|&b| b == 0) {
            file.seek(SeekFrom::Current(filled as i64))
                .map_err(CopyError::Write)?;
        } else {
            file.write_all(data).map_err(CopyError::Write)?;
        }
        length += filled as u64;
    }
    // A trailing hole has no write to extend the file over it.
    file.set_len(length).map_err(CopyError::Write)
}

/// The entry path rebuilt from its normal components; `.` components are dropped, absolute
/// paths and `..` refused.
pub(crate) fn relative(path: &Path) -> Result<PathBuf, String> {
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("the path contains a '..' component".into()),
            Component::RootDir | Component::Prefix(_) => {
                return Err("the path is absolute; layer paths must be relative".into())
            }
        }
    }
    Ok(rel)
}

fn chown(path: &Path, attributes: &Attributes) -> io::Result<()> {
    fchownat(
        None,
        path,
        Some(Uid::from_raw(attributes.uid)),
        Some(Gid::from_raw(attributes.gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

fn set_mtime(path: &Path, attributes: &Attributes) -> io::Result<()> {
    let time = attributes.mtime;
    utimensat(None, path, &time, &time, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
}
