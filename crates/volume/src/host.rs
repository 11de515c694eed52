//! Volumes on this host: one directory per volume holding its image, its
//! mount point and the name of the machine it is attached for.
//!
//! Every operation is idempotent and crash-safe: new images are built
//! under a temporary name and renamed into place, so a volume's image is
//! either complete or absent, and attach/detach check the kernel's view
//! before acting.

use crate::attach;
use crate::disk::{self, FsType, Usage, BLOCK_SIZE};
use crate::error::{Result, VolumeError};
use crate::snapshots::{SnapshotInfo, SnapshotStore};
use std::path::{Path, PathBuf};

/// The host files of one volume.
#[derive(Debug, Clone)]
pub struct VolumePaths {
    pub dir: PathBuf,
    /// The ext4 image (sparse).
    pub image: PathBuf,
    /// Where the image is mounted on the host while a machine runs; the
    /// machine gets a bind mount of this directory.
    pub mount: PathBuf,
    /// Names the machine the volume is attached for, while it is.
    holder: PathBuf,
    /// An image under construction; renamed to `image` when complete.
    partial: PathBuf,
}

impl VolumePaths {
    /// The files of a volume kept in directory `dir`.
    pub fn in_dir(dir: PathBuf) -> VolumePaths {
        VolumePaths {
            image: dir.join("image"),
            mount: dir.join("mnt"),
            holder: dir.join("holder"),
            partial: dir.join("image.partial"),
            dir,
        }
    }
}

/// The volumes under one directory (roost uses `DATA/volumes`).
#[derive(Debug, Clone)]
pub struct VolumeHost {
    root: PathBuf,
}

impl VolumeHost {
    pub fn open(root: impl Into<PathBuf>) -> Result<VolumeHost> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(VolumeError::at("create", &root))?;
        // Volumes hold whatever machines wrote, setuid files included:
        // only root may reach them.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
            .map_err(VolumeError::at("restrict", &root))?;
        Ok(VolumeHost { root })
    }

    /// The paths of volume `id`, which must be a plain name (the caller's ids are).
    pub fn paths(&self, id: &str) -> VolumePaths {
        VolumePaths::in_dir(self.root.join(id))
    }

    /// Ids of every volume with a directory here.
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.root).map_err(VolumeError::at("list", &self.root))?;
        Ok(entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    }

    /// Whether volume `id` has a complete image.
    pub fn exists(&self, id: &str) -> bool {
        self.paths(id).image.exists()
    }

    /// Builds the image of volume `id` with `build` (writing to the path it
    /// is given) unless the image exists already.
    fn build(&self, id: &str, build: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let paths = self.paths(id);
        if paths.image.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&paths.dir).map_err(VolumeError::at("create", &paths.dir))?;
        build(&paths.partial)?;
        std::fs::rename(&paths.partial, &paths.image)
            .map_err(VolumeError::at("rename", &paths.partial))?;
        std::fs::File::open(&paths.dir)
            .and_then(|d| d.sync_all())
            .map_err(VolumeError::at("fsync", &paths.dir))
    }

    /// Creates volume `id`: an empty filesystem of `size` bytes.
    pub fn create(&self, id: &str, size: u64, fs: FsType) -> Result<()> {
        check_size(size)?;
        if size < fs.min_size() {
            return Err(VolumeError::Invalid(format!(
                "a {} volume needs at least {} bytes, not {size}",
                fs.name(),
                fs.min_size()
            )));
        }
        self.build(id, |path| disk::make_filesystem(path, size, fs))
    }

    /// Creates volume `id` from snapshot `snapshot`, grown to `size` bytes
    /// (at least the snapshot's size).
    pub fn restore(
        &self,
        id: &str,
        store: &SnapshotStore,
        snapshot: &str,
        size: u64,
    ) -> Result<()> {
        check_size(size)?;
        self.build(id, |path| {
            let restored = store.restore(snapshot, path)?;
            grow_new_image(path, restored, size)
        })
    }

    /// Creates volume `id` as a copy of volume `source` grown to `size`
    /// bytes. A mounted source is frozen during the copy, so the copy is
    /// what a crash at that instant would have left: consistent, with
    /// every fsynced write in it.
    pub fn fork(&self, source: &str, id: &str, size: u64) -> Result<()> {
        check_size(size)?;
        let from = self.paths(source);
        self.build(id, |path| {
            let copied = {
                let _frozen = self.freeze_if_mounted(&from)?;
                disk::sparse_copy(&from.image, path)?
            };
            tracing::info!(source, volume = id, copied, "volume forked");
            let len = std::fs::metadata(path)
                .map_err(VolumeError::at("stat", path))?
                .len();
            grow_new_image(path, len, size)
        })
    }

    /// Grows volume `id` to `size` bytes. A mounted volume grows online
    /// (the machine sees the new capacity at once) where the host allows
    /// it; otherwise, and for an unmounted XFS volume, the filesystem grows
    /// at the next attach. Returns whether the filesystem has its new size
    /// now. Shrinking is refused.
    pub fn grow(&self, id: &str, size: u64) -> Result<bool> {
        check_size(size)?;
        let paths = self.paths(id);
        let current = std::fs::metadata(&paths.image)
            .map_err(VolumeError::at("stat", &paths.image))?
            .len();
        if size < current {
            return Err(VolumeError::Invalid(format!(
                "volumes only grow: {size} bytes is less than the current {current}"
            )));
        }
        disk::extend_file(&paths.image, size)?;
        if !attach::is_mount_point(&paths.mount) {
            disk::grow_unmounted(&paths.image)?;
            return Ok(disk::filesystem_size(&paths.image)?.1 >= size);
        }
        let device = attach::loop_devices_of(&paths.image)
            .into_iter()
            .next()
            .ok_or_else(|| {
                VolumeError::Invalid(format!("volume {id} is mounted without a loop device"))
            })?;
        attach::refresh_capacity(&device)?;
        let (fs, _) = disk::filesystem_size(&paths.image)?;
        disk::grow_mounted(fs, &device, &paths.mount)
    }

    /// Mounts volume `id` on the host for machine `holder` and returns the
    /// mount point. Attaching again for the same holder is a no-op; a
    /// volume mounted for another holder is refused.
    pub fn attach(&self, id: &str, holder: &str) -> Result<PathBuf> {
        let paths = self.paths(id);
        if !paths.image.exists() {
            return Err(VolumeError::Invalid(format!(
                "volume {id} has no image on this host"
            )));
        }
        match self.holder(id) {
            Some(current) if current != holder && attach::is_mount_point(&paths.mount) => {
                return Err(VolumeError::Invalid(format!(
                    "volume {id} is mounted for machine {current}"
                )))
            }
            _ => {}
        }
        // The holder is written first, so a crash after the mount still
        // tells recovery whose mount it is.
        std::fs::write(&paths.holder, holder).map_err(VolumeError::at("write", &paths.holder))?;
        if !attach::is_mount_point(&paths.mount) {
            // Finish a growth the filesystem could not do while mounted.
            disk::grow_unmounted(&paths.image)?;
        }
        let (fs, fs_bytes) = disk::filesystem_size(&paths.image)?;
        let device = attach::attach(&paths.image, &paths.mount, fs)?;
        let len = std::fs::metadata(&paths.image)
            .map_err(VolumeError::at("stat", &paths.image))?
            .len();
        if fs == FsType::Xfs && fs_bytes < len {
            disk::grow_mounted(fs, &device, &paths.mount)?;
        }
        Ok(paths.mount)
    }

    /// Unmounts volume `id` from the host; a detached volume is fine.
    pub fn detach(&self, id: &str) -> Result<()> {
        let paths = self.paths(id);
        attach::detach(&paths.image, &paths.mount)?;
        match std::fs::remove_file(&paths.holder) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(VolumeError::io(
                format!("cannot remove {}", paths.holder.display()),
                e,
            )),
        }
    }

    /// The machine volume `id` is attached for, if any.
    pub fn holder(&self, id: &str) -> Option<String> {
        std::fs::read_to_string(self.paths(id).holder)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    pub fn is_mounted(&self, id: &str) -> bool {
        attach::is_mount_point(&self.paths(id).mount)
    }

    /// Thaws volume `id` if a killed process left it frozen.
    pub fn thaw(&self, id: &str) -> Result<()> {
        let paths = self.paths(id);
        if attach::is_mount_point(&paths.mount) && attach::thaw(&paths.mount)? {
            tracing::warn!(volume = id, "thawed a volume left frozen");
        }
        Ok(())
    }

    /// Detaches and deletes volume `id`'s files; a missing volume is fine.
    pub fn remove(&self, id: &str) -> Result<()> {
        let paths = self.paths(id);
        self.detach(id)?;
        match std::fs::remove_dir_all(&paths.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(VolumeError::io(
                format!("cannot remove {}", paths.dir.display()),
                e,
            )),
        }
    }

    /// Releases loop devices backed by files under this host's directory
    /// that belong to no volume `keep` accepts, or whose image is gone.
    pub fn release_stray_loops(&self, keep: impl Fn(&str) -> bool) -> Result<()> {
        for (device, backing) in attach::loop_devices() {
            let Ok(rest) = backing.strip_prefix(&self.root) else {
                continue;
            };
            let id = rest
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_default();
            if !keep(&id) || !backing.exists() {
                let paths = self.paths(&id);
                if attach::is_mount_point(&paths.mount) {
                    attach::detach(&backing, &paths.mount)?;
                }
                tracing::warn!(device = %device.display(), backing = %backing.display(), "releasing stray loop device");
                attach::release_loop(&device)?;
            }
        }
        Ok(())
    }

    /// Capacity of volume `id`: live figures while mounted, otherwise those
    /// recorded in its superblock.
    pub fn usage(&self, id: &str) -> Result<Usage> {
        let paths = self.paths(id);
        if attach::is_mount_point(&paths.mount) {
            disk::mounted_usage(&paths.mount)
        } else {
            disk::image_usage(&paths.image)
        }
    }

    /// Stores the current content of volume `id` as snapshot `snapshot`,
    /// freezing it during the copy when it is mounted.
    pub fn snapshot(
        &self,
        id: &str,
        store: &SnapshotStore,
        snapshot: &str,
    ) -> Result<SnapshotInfo> {
        let paths = self.paths(id);
        let _frozen = self.freeze_if_mounted(&paths)?;
        store.create(snapshot, &paths.image)
    }

    fn freeze_if_mounted(&self, paths: &VolumePaths) -> Result<Option<attach::Frozen>> {
        if attach::is_mount_point(&paths.mount) {
            attach::freeze(&paths.mount).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Grows a just-built (unmounted) image from `len` to `size` bytes.
fn grow_new_image(path: &Path, len: u64, size: u64) -> Result<()> {
    if size < len {
        return Err(VolumeError::Invalid(format!(
            "the new volume must be at least as large as its source ({len} bytes), not {size}"
        )));
    }
    disk::extend_file(path, size)?;
    disk::grow_unmounted(path)
}

fn check_size(size: u64) -> Result<()> {
    if size == 0 || !size.is_multiple_of(BLOCK_SIZE) {
        return Err(VolumeError::Invalid(format!(
            "a volume size must be a positive multiple of {BLOCK_SIZE} bytes, not {size}"
        )));
    }
    Ok(())
}
