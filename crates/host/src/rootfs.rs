//! Machines' root filesystem disks: what bounds a machine's writes to its
//! root filesystem (Fly's `rootfs.size_gb`).
//!
//! Why: the overlay's upper directory holds everything a machine writes
//! outside its volumes. On the data dir's filesystem, one machine could
//! fill the host's disk. So the upper and work directories live on a
//! filesystem of their own: an ext4 image of the machine's size, sparse
//! (it costs only the blocks written), on a loop device. That is the
//! mechanism of volumes, so it is roost-volume's [`VolumeHost`], rooted
//! at `DATA/machines`: machine `<id>`'s disk is `DATA/machines/<id>/image`,
//! mounted at `DATA/machines/<id>/mnt` (`nosuid,nodev`; the machine's own
//! overlay mount decides what may run inside it). The filesystem enforces
//! the size: a full disk is `ENOSPC` inside the machine and nothing
//! outside, and `df /` inside shows the size (overlayfs reports its upper
//! filesystem).
//!
//! When: the first step that needs the upper dir (reset or mount of the
//! rootfs) makes and mounts the disk, and it stays mounted until the
//! machine is destroyed, as the machine's network namespace does: a start
//! pays for neither a loop device nor a mount, which cost more than the
//! whole start on a loaded host (BENCHMARKS.md). After a host reboot the
//! next start (or file-tool call) mounts it again. A larger `size_gb` in
//! an update grows the filesystem at the next start; shrinking is refused
//! before anything changes.

use crate::error::{HostError, Result};
use crate::paths::MachinePaths;
use roost_volume::{FsType, VolumeHost};
use std::path::Path;

const GIB: u64 = 1 << 30;

/// The root filesystem disks of every machine, one per machine directory.
#[derive(Debug, Clone)]
pub(crate) struct RootfsDisks {
    host: VolumeHost,
}

impl RootfsDisks {
    pub(crate) fn open(data_dir: &Path) -> Result<RootfsDisks> {
        let host = VolumeHost::open(data_dir.join("machines")).map_err(HostError::Disk)?;
        Ok(RootfsDisks { host })
    }

    /// Makes machine `id`'s disk of `size_gb` unless it exists, grows it
    /// to `size_gb` if it is smaller, and mounts it. Cheap when all that
    /// is done already (the start of a stopped machine). The caller holds
    /// the machine's lock and its overlay is not mounted.
    pub(crate) fn ensure(&self, paths: &MachinePaths, id: &str, size_gb: u64) -> Result<()> {
        let size = size_gb * GIB;
        let legacy = paths.dir.join("upper");
        if !self.host.exists(id) {
            self.host
                .create(id, size, FsType::Ext4)
                .map_err(HostError::Disk)?;
        } else if image_len(&paths.disk.image)? < size {
            // Online where the host allows it; otherwise the attach below
            // grows the unmounted filesystem first.
            if !self.host.grow(id, size).map_err(HostError::Disk)? {
                self.host.detach(id).map_err(HostError::Disk)?;
            }
        } else if self.host.is_mounted(id) && !legacy.exists() {
            return Ok(());
        }
        self.host.attach(id, id).map_err(HostError::Disk)?;
        if legacy.exists() {
            move_legacy_upper(paths, &legacy, size_gb)?;
        }
        Ok(())
    }

    /// Unmounts machine `id`'s disk and removes its directory (the disk,
    /// the bundle, the logs); a missing one is fine.
    pub(crate) fn remove(&self, id: &str) -> Result<()> {
        self.host.remove(id).map_err(HostError::Disk)
    }

    /// Releases loop devices of disks under `DATA/machines` whose machine
    /// `keep` does not accept, or whose image is gone.
    pub(crate) fn release_strays(&self, keep: impl Fn(&str) -> bool) -> Result<()> {
        self.host.release_stray_loops(keep).map_err(HostError::Disk)
    }
}

fn image_len(image: &Path) -> Result<u64> {
    Ok(std::fs::metadata(image)?.len())
}

/// A machine of a data dir from before rootfs disks keeps its changes in
/// `DATA/machines/<id>/upper`: they are copied onto the disk (ownership,
/// modes, links, device nodes and extended attributes, overlayfs'
/// whiteouts included), then the old directories are removed. A copy cut
/// short by a crash is simply done again.
fn move_legacy_upper(paths: &MachinePaths, legacy: &Path, size_gb: u64) -> Result<()> {
    std::fs::create_dir_all(&paths.upper)?;
    let mut source = legacy.as_os_str().to_owned();
    source.push("/.");
    let output = std::process::Command::new("cp")
        .arg("-a")
        .arg(&source)
        .arg(&paths.upper)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| HostError::Internal(format!("cannot run cp: {e}")))?;
    if !output.status.success() {
        return Err(HostError::Internal(format!(
            "cannot move the machine's root filesystem changes from {} onto its {size_gb} GB \
             disk (if they are larger, update the machine with a larger rootfs.size_gb): {}",
            legacy.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    std::fs::remove_dir_all(legacy)?;
    match std::fs::remove_dir_all(paths.dir.join("work")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}
