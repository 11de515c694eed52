//! Writing files into a machine's root filesystem from the host.
//!
//! The rootfs belongs to the machine: anything in it, including symlinks
//! such as `/etc -> /`, may have been planted by the code running inside.
//! Every path is therefore resolved with `openat2(RESOLVE_IN_ROOT)`, which
//! makes the kernel treat the rootfs as `/` for `..` and absolute symlinks,
//! so no guest path can reach a host file.

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Component, Path};

/// Checks that `path` names a file inside a machine: absolute, normal
/// components only, no NUL. Returns a message for the user otherwise.
pub fn check_guest_path(path: &str) -> Result<(), String> {
    if path.contains('\0') {
        return Err("path contains a NUL byte".into());
    }
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!(
            "{path:?} must be an absolute path such as /etc/app.conf"
        ));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("{path:?} must not contain '..'"));
    }
    if p.file_name().is_none() {
        return Err(format!("{path:?} must name a file, not the root directory"));
    }
    Ok(())
}

fn open_in_root(root: &OwnedFd, path: &Path, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(mode)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd: RawFd = openat2(root.as_raw_fd(), path, how)?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_root(root: &Path) -> std::io::Result<OwnedFd> {
    let fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens directory `dir` (relative to the machine's `/`), creating missing
/// components with mode 0755 like `mkdir -p`.
fn open_or_create_dir(root: &OwnedFd, dir: &Path) -> std::io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let mut current = open_in_root(
        root,
        Path::new("/"),
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        Mode::empty(),
    )?;
    let mut walked = std::path::PathBuf::from("/");
    for component in dir.components().skip(1) {
        walked.push(component);
        match open_in_root(
            root,
            &walked,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            Mode::empty(),
        ) {
            Ok(fd) => current = fd,
            Err(Errno::ENOENT) => {
                match nix::sys::stat::mkdirat(
                    Some(current.as_raw_fd()),
                    component.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(err) => return Err(err.into()),
                }
                current = open_in_root(
                    root,
                    &walked,
                    OFlag::O_PATH | OFlag::O_DIRECTORY,
                    Mode::empty(),
                )?;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(current)
}

/// Writes `content` to `guest_path` inside the rootfs at `root`, creating
/// parent directories, replacing any existing file, with `mode`.
pub fn write_file(root: &Path, guest_path: &str, content: &[u8], mode: u32) -> std::io::Result<()> {
    check_guest_path(guest_path)
        .map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidInput, why))?;
    let path = Path::new(guest_path);
    let root_fd = open_root(root)?;
    if let Some(parent) = path.parent() {
        open_or_create_dir(&root_fd, parent)?;
    }
    let fd = open_in_root(
        &root_fd,
        path,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC,
        Mode::from_bits_truncate(mode & 0o7777),
    )?;
    let mut file = File::from(fd);
    file.write_all(content)?;
    // O_CREAT applies the mode only to new files (and under the umask).
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn writes_create_parents_and_set_mode() {
        let root = tempfile::tempdir().unwrap();
        write_file(root.path(), "/etc/app/conf.toml", b"x=1", 0o600).unwrap();
        let written = root.path().join("etc/app/conf.toml");
        assert_eq!(std::fs::read(&written).unwrap(), b"x=1");
        assert_eq!(
            std::fs::metadata(&written).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_file(root.path(), "/etc/app/conf.toml", b"x=2", 0o644).unwrap();
        assert_eq!(std::fs::read(&written).unwrap(), b"x=2");
    }

    #[test]
    fn symlinks_in_the_guest_cannot_reach_the_host() {
        let host = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        // A hostile guest points its /etc and a file at host paths.
        symlink(host.path(), root.path().join("etc")).unwrap();
        symlink(host.path().join("target"), root.path().join("file")).unwrap();
        write_file(root.path(), "/etc/shadow", b"owned", 0o644).unwrap();
        write_file(root.path(), "/file", b"owned", 0o644).unwrap();
        assert!(
            std::fs::read_dir(host.path()).unwrap().next().is_none(),
            "host dir touched"
        );
        // The writes landed inside the rootfs, under the guest's view of the link target.
        let inside = root.path().join(host.path().strip_prefix("/").unwrap());
        assert_eq!(std::fs::read(inside.join("shadow")).unwrap(), b"owned");
    }

    #[test]
    fn bad_guest_paths_are_refused() {
        for path in ["relative", "/a/../../etc/passwd", "/", "/a\0b"] {
            assert!(check_guest_path(path).is_err(), "{path:?}");
        }
        let root = tempfile::tempdir().unwrap();
        assert!(write_file(root.path(), "../../etc/shadow", b"", 0o644).is_err());
    }
}
