//! Where a machine's host-side files live under the data directory.

use std::path::{Path, PathBuf};

/// `DATA/machines/<id>/` holds everything of one machine; destroying the
/// machine removes the directory.
#[derive(Debug, Clone)]
pub(crate) struct MachinePaths {
    pub(crate) dir: PathBuf,
    /// OCI bundle: `config.json`, written at create/update.
    pub(crate) bundle: PathBuf,
    /// overlayfs mount point, mounted only while the machine runs.
    pub(crate) rootfs: PathBuf,
    /// The machine's root filesystem disk (`image`, mounted at `mnt` from
    /// its first start until it is destroyed; see `crate::rootfs`).
    pub(crate) disk: roost_volume::VolumePaths,
    /// overlayfs upper dir, on the disk: the machine's own changes to its
    /// image.
    pub(crate) upper: PathBuf,
    pub(crate) work: PathBuf,
    /// The main process's stdout and stderr.
    pub(crate) log: PathBuf,
    /// Image layer directories, one per line, lowest first.
    pub(crate) lower: PathBuf,
    /// The machine's `/etc/resolv.conf` (internal DNS), bind-mounted in.
    pub(crate) resolv_conf: PathBuf,
}

impl MachinePaths {
    pub(crate) fn new(data_dir: &Path, id: &str) -> MachinePaths {
        let dir = data_dir.join("machines").join(id);
        let disk = roost_volume::VolumePaths::in_dir(dir.clone());
        MachinePaths {
            bundle: dir.join("bundle"),
            rootfs: dir.join("bundle").join("rootfs"),
            upper: disk.mount.join("upper"),
            work: disk.mount.join("work"),
            disk,
            log: dir.join("log"),
            lower: dir.join("lower"),
            resolv_conf: dir.join("resolv.conf"),
            dir,
        }
    }

    /// The rotated log that precedes `log`.
    pub(crate) fn rotated_log(&self) -> PathBuf {
        roost_runtime::logs::rotated_path(&self.log)
    }
}
