//! Reading, writing and listing files in a machine's root filesystem from
//! the host.
//!
//! The rootfs belongs to the machine: anything in it, including symlinks
//! such as `/etc -> /`, may have been planted by the code running inside.
//! Every path is therefore resolved with `openat2(RESOLVE_IN_ROOT)`, which
//! makes the kernel treat the rootfs as `/` for `..` and absolute symlinks,
//! so no guest path can reach a host file. Only regular files are read or
//! written: a guest may also plant FIFOs (opening one blocks) and device
//! nodes (roost, unlike the machine, is not confined by a device cgroup, so
//! opening one would reach host hardware).

use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};
use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Component, Path};

/// Checks that `path` names a file inside a machine: absolute, normal
/// components only, no NUL. Returns a message for the user otherwise.
pub fn check_guest_path(path: &str) -> Result<(), String> {
    check_guest_dir(path)?;
    if Path::new(path).file_name().is_none() {
        return Err(format!("{path:?} must name a file, not the root directory"));
    }
    Ok(())
}

/// Like [`check_guest_path`], but `/` is allowed: it names a directory.
pub fn check_guest_dir(path: &str) -> Result<(), String> {
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
    Ok(())
}

fn invalid_path(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, why)
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

/// Opens the existing regular file at `path` with `flags`. The file is
/// first opened as an `O_PATH` handle, which does no I/O, and checked; the
/// reopen through `/proc/self/fd` reaches exactly the inode checked.
fn open_regular(root: &OwnedFd, path: &Path, flags: OFlag) -> std::io::Result<File> {
    use std::os::fd::AsRawFd;
    let handle = open_in_root(root, path, OFlag::O_PATH, Mode::empty())?;
    require_regular(handle.as_raw_fd(), path)?;
    let fd = nix::fcntl::open(
        Path::new(&format!("/proc/self/fd/{}", handle.as_raw_fd())),
        flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::empty(),
    )?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn require_regular(fd: RawFd, path: &Path) -> std::io::Result<()> {
    let stat = nix::sys::stat::fstat(fd)?;
    let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    if kind == SFlag::S_IFREG {
        Ok(())
    } else if kind == SFlag::S_IFDIR {
        Err(std::io::ErrorKind::IsADirectory.into())
    } else {
        Err(invalid_path(format!(
            "{} is not a regular file (a device, FIFO or socket); only regular files can be read or written",
            path.display()
        )))
    }
}

/// Writes `content` to `guest_path` inside the rootfs at `root`, creating
/// parent directories, replacing any existing file, with `mode`.
pub fn write_file(root: &Path, guest_path: &str, content: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    check_guest_path(guest_path).map_err(invalid_path)?;
    let path = Path::new(guest_path);
    let root_fd = open_root(root)?;
    if let Some(parent) = path.parent() {
        open_or_create_dir(&root_fd, parent)?;
    }
    let mut file = match open_regular(&root_fd, path, OFlag::O_WRONLY) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            // Not there a moment ago: create it. O_NONBLOCK keeps a FIFO
            // planted in between from blocking; the check refuses it.
            let fd = open_in_root(
                &root_fd,
                path,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
                Mode::from_bits_truncate(mode & 0o7777),
            )?;
            require_regular(fd.as_raw_fd(), path)?;
            File::from(fd)
        }
        Err(err) => return Err(err),
    };
    file.set_len(0)?;
    file.write_all(content)?;
    // O_CREAT applies the mode only to new files (and under the umask).
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
    Ok(())
}

/// Reads at most `limit` bytes at `offset` of the regular file
/// `guest_path`; returns them and the file's size.
pub fn read_file(
    root: &Path,
    guest_path: &str,
    offset: u64,
    limit: u64,
) -> std::io::Result<(Vec<u8>, u64)> {
    use std::io::{Read, Seek};
    check_guest_path(guest_path).map_err(invalid_path)?;
    let root_fd = open_root(root)?;
    let mut file = open_regular(&root_fd, Path::new(guest_path), OFlag::O_RDONLY)?;
    let size = file.metadata()?.len();
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut data = Vec::new();
    file.take(limit).read_to_end(&mut data)?;
    Ok((data, size))
}

/// What a directory entry is. Symlinks are reported, not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// A device node, FIFO or socket.
    Other,
}

/// One entry of a guest directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DirEntry {
    pub name: String,
    pub kind: EntryKind,
    /// Bytes (for a symlink: the length of its target).
    pub size: u64,
    /// Permission bits, e.g. 0o644.
    pub mode: u32,
    /// Where a symlink points, as stored in the link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

/// The entries of the guest directory `guest_path`, sorted by name, at
/// most `max` of them; the flag says whether more were left out.
pub fn list_dir(
    root: &Path,
    guest_path: &str,
    max: usize,
) -> std::io::Result<(Vec<DirEntry>, bool)> {
    use std::os::fd::{AsRawFd, IntoRawFd};
    check_guest_dir(guest_path).map_err(invalid_path)?;
    let root_fd = open_root(root)?;
    // O_DIRECTORY refuses anything else before it is opened for I/O.
    let fd = open_in_root(
        &root_fd,
        Path::new(guest_path),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
    )?;
    let mut dir = nix::dir::Dir::from_fd(fd.into_raw_fd())?;
    let dir_fd = dir.as_raw_fd();
    let mut entries = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let stat = nix::sys::stat::fstatat(Some(dir_fd), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let kind = match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFREG => EntryKind::File,
            SFlag::S_IFDIR => EntryKind::Dir,
            SFlag::S_IFLNK => EntryKind::Symlink,
            _ => EntryKind::Other,
        };
        let link_target = (kind == EntryKind::Symlink)
            .then(|| nix::fcntl::readlinkat(Some(dir_fd), name))
            .transpose()?
            .map(|target| target.to_string_lossy().into_owned());
        entries.push(DirEntry {
            name: name.to_string_lossy().into_owned(),
            kind,
            size: u64::try_from(stat.st_size).unwrap_or(0),
            mode: stat.st_mode & 0o7777,
            link_target,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let truncated = entries.len() > max;
    entries.truncate(max);
    Ok((entries, truncated))
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
        // The guest's view of the link targets exists inside the rootfs.
        let inside = root.path().join(host.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        write_file(root.path(), "/etc/shadow", b"owned", 0o644).unwrap();
        write_file(root.path(), "/file", b"owned", 0o644).unwrap();
        assert!(
            std::fs::read_dir(host.path()).unwrap().next().is_none(),
            "host dir touched"
        );
        // The writes landed inside the rootfs, under the guest's view of the link targets.
        assert_eq!(std::fs::read(inside.join("shadow")).unwrap(), b"owned");
        assert_eq!(std::fs::read(inside.join("target")).unwrap(), b"owned");
        assert_eq!(
            read_file(root.path(), "/file", 0, 100).unwrap(),
            (b"owned".to_vec(), 5)
        );
    }

    #[test]
    fn reads_slices_and_lists_entries() {
        let root = tempfile::tempdir().unwrap();
        write_file(root.path(), "/src/main.rs", b"fn main() {}", 0o640).unwrap();
        symlink("/src/main.rs", root.path().join("link")).unwrap();
        assert_eq!(
            read_file(root.path(), "/link", 3, 4).unwrap(),
            (b"main".to_vec(), 12)
        );
        let (entries, truncated) = list_dir(root.path(), "/", 10).unwrap();
        assert!(!truncated);
        let names: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            names,
            [("link", EntryKind::Symlink), ("src", EntryKind::Dir)]
        );
        assert_eq!(entries[0].link_target.as_deref(), Some("/src/main.rs"));
        let (entries, truncated) = list_dir(root.path(), "/src", 0).unwrap();
        assert!(entries.is_empty() && truncated);
        let err = read_file(root.path(), "/src", 0, 10).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::IsADirectory);
    }

    #[test]
    fn fifos_and_devices_are_neither_opened_nor_written() {
        let root = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&root.path().join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        // A FIFO would block an open for reading or writing forever.
        for result in [
            read_file(root.path(), "/fifo", 0, 10).map(|_| ()),
            write_file(root.path(), "/fifo", b"x", 0o644),
        ] {
            assert_eq!(result.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
        }
        // /dev/null stands for any device node a guest could plant.
        symlink("/dev/null", root.path().join("dev")).unwrap();
        let host_null = tempfile::tempdir().unwrap();
        nix::sys::stat::mknod(
            &host_null.path().join("null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        std::fs::rename(host_null.path().join("null"), root.path().join("null")).unwrap();
        let err = write_file(root.path(), "/null", b"x", 0o644).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
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
