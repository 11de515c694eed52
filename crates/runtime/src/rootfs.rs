//! Overlayfs root filesystems: read-only image layers below, a per-machine
//! writable upper directory on top.
//!
//! Every function is idempotent so a lifecycle step that crashed half-way
//! can simply run again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::RuntimeError;

/// Who the overlay is mounted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayUse {
    /// The machine's root filesystem: its setuid programs and device nodes
    /// work inside it (the machine's own `su`, `/dev/null` in an image).
    Machine,
    /// roost's own access from the host (file tools on a stopped machine):
    /// `nosuid` and `nodev`, so nothing in it runs with its owner's rights
    /// or opens a host device through this mount.
    Host,
}

/// Mounts an overlay of `lowers` (first = topmost) with `upper` and `work`
/// at `target`, creating the three directories if needed. Does nothing if
/// `target` is already a mount point.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    purpose: OverlayUse,
) -> Result<(), RuntimeError> {
    if lowers.is_empty() {
        return Err(RuntimeError::invalid(
            "overlay lowers",
            "at least one lower directory is required",
        ));
    }
    let mut options = String::from("lowerdir=");
    for (i, lower) in lowers.iter().enumerate() {
        if i > 0 {
            options.push(':');
        }
        options.push_str(option_path(lower)?);
    }
    options.push_str(",upperdir=");
    options.push_str(option_path(upper)?);
    options.push_str(",workdir=");
    options.push_str(option_path(work)?);
    // mount(2) copies at most one page of options.
    if options.len() >= 4096 {
        return Err(RuntimeError::invalid(
            "overlay lowers",
            format!("{} layers make the mount options exceed 4095 bytes; use shorter layer paths or fewer layers", lowers.len()),
        ));
    }
    for dir in [upper, work, target] {
        fs::create_dir_all(dir)
            .map_err(|err| RuntimeError::io(format!("cannot create {}", dir.display()), err))?;
    }
    if is_mounted(target) {
        tracing::debug!(target = %target.display(), "overlay already mounted");
        return Ok(());
    }
    let flags = match purpose {
        OverlayUse::Machine => MsFlags::empty(),
        OverlayUse::Host => MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
    };
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        flags,
        Some(options.as_str()),
    )
    .map_err(|errno| {
        RuntimeError::io(
            format!("cannot mount overlay at {} ({options})", target.display()),
            io::Error::from(errno),
        )
    })?;
    tracing::debug!(target = %target.display(), layers = lowers.len(), "overlay mounted");
    Ok(())
}

/// Unmounts `target`; succeeds if nothing is mounted there.
pub fn unmount(target: &Path) -> Result<(), RuntimeError> {
    if !is_mounted(target) {
        return Ok(());
    }
    match umount2(target, MntFlags::empty()) {
        Ok(()) => {
            tracing::debug!(target = %target.display(), "unmounted");
            Ok(())
        }
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => Ok(()),
        Err(errno) => Err(RuntimeError::io(
            format!(
                "cannot unmount {} (is a process still using it?)",
                target.display()
            ),
            io::Error::from(errno),
        )),
    }
}

/// Whether `target` is a mount point in this process's mount namespace,
/// according to `/proc/self/mountinfo`.
pub fn is_mounted(target: &Path) -> bool {
    let Ok(target) = fs::canonicalize(target) else {
        return false;
    };
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| Path::new(&unescape(mount_point)) == target)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let code = rest
            .get(pos + 1..pos + 4)
            .and_then(|oct| u8::from_str_radix(oct, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[pos + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[pos + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Overlay options are comma- and colon-separated: refuse paths that would
/// change their meaning.
fn option_path(path: &Path) -> Result<&str, RuntimeError> {
    match path.to_str() {
        Some(s) if path.is_absolute() && !s.contains([',', ':', '\\']) => Ok(s),
        _ => Err(RuntimeError::invalid(
            "overlay directory",
            format!(
                "{}: must be an absolute UTF-8 path without ',', ':' or '\\'",
                path.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_fields() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/x\134y"), r"/x\y");
    }

    #[test]
    fn rejects_paths_that_break_overlay_options() {
        let err = mount_overlay(
            &[PathBuf::from("/a:b")],
            Path::new("/u"),
            Path::new("/w"),
            Path::new("/t"),
            OverlayUse::Machine,
        )
        .expect_err("colon in lower");
        assert!(matches!(err, RuntimeError::InvalidInput { .. }));
        assert!(mount_overlay(
            &[],
            Path::new("/u"),
            Path::new("/w"),
            Path::new("/t"),
            OverlayUse::Machine
        )
        .is_err());
    }

    #[test]
    fn root_is_mounted_and_a_fresh_dir_is_not() {
        assert!(is_mounted(Path::new("/")));
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!is_mounted(dir.path()));
        unmount(dir.path()).expect("unmounting a non-mount point is a no-op");
    }
}
