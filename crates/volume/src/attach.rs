//! Attaching an image to the host: a loop device, an ext4 mount on it, and
//! freezing that mount for crash-consistent copies.
//!
//! The kernel is the source of truth: which loop device backs which file is
//! read from sysfs and whether a directory is a mount point from its device
//! number, so every function here can run again after a crash and finds
//! what the previous run left.

use crate::disk::FsType;
use crate::error::{Result, VolumeError};
use crate::tool::LOSETUP;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Loop devices whose backing file is `image` (or was, if it is deleted).
pub(crate) fn loop_devices_of(image: &Path) -> Vec<PathBuf> {
    loop_devices()
        .into_iter()
        .filter(|(_, backing)| backing == image)
        .map(|(device, _)| device)
        .collect()
}

/// Every loop device in use and its backing file, from sysfs. A deleted
/// backing file is reported without the kernel's " (deleted)" suffix.
pub(crate) fn loop_devices() -> Vec<(PathBuf, PathBuf)> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let backing = std::fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
            let backing = backing.trim_end_matches('\n');
            let backing = backing.strip_suffix(" (deleted)").unwrap_or(backing);
            Some((Path::new("/dev").join(name), PathBuf::from(backing)))
        })
        .collect()
}

/// Whether `dir` is the root of a mounted filesystem other than its
/// parent's (true for every loop mount roost makes).
pub(crate) fn is_mount_point(dir: &Path) -> bool {
    let (Ok(own), Ok(parent)) = (std::fs::metadata(dir), std::fs::metadata(dir.join(".."))) else {
        return false;
    };
    own.dev() != parent.dev()
}

/// Attaches `image` to a loop device (reusing one that already backs it)
/// and mounts it at `mount` unless something is mounted there already.
/// Returns the loop device.
pub(crate) fn attach(image: &Path, mount: &Path, fs: FsType) -> Result<PathBuf> {
    std::fs::create_dir_all(mount).map_err(VolumeError::at("create", mount))?;
    let device = match loop_devices_of(image).into_iter().next() {
        Some(device) => {
            // Left by a crash, perhaps before the image grew.
            refresh_capacity(&device)?;
            device
        }
        None => {
            let out = LOSETUP.run([
                "--find".as_ref(),
                "--show".as_ref(),
                "--nooverlap".as_ref(),
                image.as_os_str(),
            ])?;
            PathBuf::from(out.trim())
        }
    };
    if !is_mount_point(mount) {
        use nix::mount::MsFlags;
        nix::mount::mount(
            Some(device.as_path()),
            mount,
            Some(fs.name()),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            fs.mount_options(),
        )
        .map_err(|e| {
            VolumeError::io(
                format!("cannot mount {} at {}", device.display(), mount.display()),
                e.into(),
            )
        })?;
        tracing::debug!(image = %image.display(), device = %device.display(), mount = %mount.display(), "volume mounted");
    }
    Ok(device)
}

/// Unmounts `mount` and releases every loop device backing `image`;
/// succeeds when neither exists.
pub(crate) fn detach(image: &Path, mount: &Path) -> Result<()> {
    if is_mount_point(mount) {
        // A freeze left by a killed daemon would make the unmount hang.
        thaw(mount)?;
        nix::mount::umount2(mount, nix::mount::MntFlags::empty()).map_err(|e| {
            VolumeError::io(
                format!(
                    "cannot unmount {} (is a host process using it?)",
                    mount.display()
                ),
                e.into(),
            )
        })?;
        tracing::debug!(mount = %mount.display(), "volume unmounted");
    }
    for device in loop_devices_of(image) {
        release_loop(&device)?;
    }
    Ok(())
}

/// Detaches a loop device; one already gone is fine.
pub(crate) fn release_loop(device: &Path) -> Result<()> {
    match LOSETUP.run(["-d".as_ref(), device.as_os_str()]) {
        Ok(_) => Ok(()),
        Err(_) if !device_in_use(device) => Ok(()),
        Err(err) => Err(err),
    }
}

fn device_in_use(device: &Path) -> bool {
    loop_devices().iter().any(|(d, _)| d == device)
}

/// Makes the loop device see the new length of its (grown) backing file.
pub(crate) fn refresh_capacity(device: &Path) -> Result<()> {
    LOSETUP.run(["--set-capacity".as_ref(), device.as_os_str()])?;
    Ok(())
}

nix::ioctl_readwrite!(fifreeze, b'X', 119, libc::c_int);
nix::ioctl_readwrite!(fithaw, b'X', 120, libc::c_int);

/// A frozen filesystem: every write to it blocks, and its block device
/// holds a consistent image with a clean journal. Thawed on drop, so an
/// error or panic during the copy cannot leave the machine stuck.
pub(crate) struct Frozen {
    mount: PathBuf,
}

/// Freezes the filesystem mounted at `mount` (FIFREEZE, what `fsfreeze -f`
/// does): dirty data is flushed and new writes wait until the thaw.
pub(crate) fn freeze(mount: &Path) -> Result<Frozen> {
    let dir = std::fs::File::open(mount).map_err(VolumeError::at("open", mount))?;
    let mut unused: libc::c_int = 0;
    // SAFETY: FIFREEZE on an open directory fd; the argument is an int the
    // kernel ignores.
    unsafe { fifreeze(std::os::fd::AsRawFd::as_raw_fd(&dir), &mut unused) }
        .map_err(|e| VolumeError::io(format!("cannot freeze {}", mount.display()), e.into()))?;
    tracing::debug!(mount = %mount.display(), "volume frozen");
    Ok(Frozen {
        mount: mount.to_path_buf(),
    })
}

/// Thaws `mount`; returns false if it was not frozen.
pub(crate) fn thaw(mount: &Path) -> Result<bool> {
    let dir = std::fs::File::open(mount).map_err(VolumeError::at("open", mount))?;
    let mut unused: libc::c_int = 0;
    // SAFETY: FITHAW on an open directory fd; the argument is ignored.
    match unsafe { fithaw(std::os::fd::AsRawFd::as_raw_fd(&dir), &mut unused) } {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EINVAL) => Ok(false),
        Err(e) => Err(VolumeError::io(
            format!("cannot thaw {}", mount.display()),
            e.into(),
        )),
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        match thaw(&self.mount) {
            Ok(_) => tracing::debug!(mount = %self.mount.display(), "volume thawed"),
            Err(err) => tracing::error!(error = %err, "volume left frozen"),
        }
    }
}
