//! Where a machine's host-side files live under the data directory.

use std::path::{Path, PathBuf};

/// `DATA/machines/<id>/` holds everything of one machine; destroying the
/// machine removes the directory.
#[derive(Debug, Clone)]
pub struct MachinePaths {
    pub dir: PathBuf,
    /// OCI bundle: `config.json`, written at create/update.
    pub bundle: PathBuf,
    /// overlayfs mount point, mounted only while the machine runs.
    pub rootfs: PathBuf,
    /// The machine's root filesystem disk (`image`, mounted at `mnt` from
    /// its first start until it is destroyed; see `crate::rootfs`).
    pub disk: roost_volume::VolumePaths,
    /// overlayfs upper dir, on the disk: the machine's own changes to its
    /// image.
    pub upper: PathBuf,
    pub work: PathBuf,
    /// The main process's stdout and stderr.
    pub log: PathBuf,
    /// Image layer directories, one per line, lowest first.
    pub lower: PathBuf,
    /// The machine's `/etc/resolv.conf` (internal DNS), bind-mounted in.
    pub resolv_conf: PathBuf,
}

impl MachinePaths {
    pub fn new(data_dir: &Path, id: &str) -> MachinePaths {
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
    pub fn rotated_log(&self) -> PathBuf {
        roost_runtime::logs::rotated_path(&self.log)
    }
}

/// The machine's cgroup, relative to the cgroup root: its bundle's
/// `cgroupsPath`, and what is killed to stop every process it forked.
pub(crate) fn cgroup_name(id: &str) -> String {
    format!("roost/{id}")
}
