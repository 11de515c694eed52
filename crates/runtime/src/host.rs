//! Facts about the host: where binaries live and which cgroup layout is mounted.

use std::env;
use std::ffi::{CStr, OsStr};
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::RuntimeError;

/// Directories searched after `$PATH`. `runc` lives in `/usr/sbin` on Debian,
/// which is often missing from a service's `$PATH`.
const FALLBACK_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Finds `program` in `$PATH` or the standard system directories.
pub(crate) fn find_program(program: &str, package: &'static str) -> Result<PathBuf, RuntimeError> {
    let path_var = env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = env::split_paths(&path_var)
        .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
        .collect();
    find_in(program, package, &dirs)
}

fn find_in(
    program: &str,
    package: &'static str,
    dirs: &[PathBuf],
) -> Result<PathBuf, RuntimeError> {
    dirs.iter()
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| RuntimeError::NotInstalled {
            program: program.to_owned(),
            package,
            searched: join_dirs(dirs),
        })
}

/// Checks that an explicitly configured binary exists and is executable.
pub(crate) fn check_program(path: &Path, package: &'static str) -> Result<PathBuf, RuntimeError> {
    if is_executable(path) {
        return Ok(path.to_owned());
    }
    Err(RuntimeError::NotInstalled {
        program: path.display().to_string(),
        package,
        searched: path.display().to_string(),
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn join_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// How cgroups are mounted on this host.
///
/// roost must run on all three layouts. The distinction matters for crun,
/// which refuses hybrid hosts outright; see [`Runtime`](crate::Runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Only cgroup v2, mounted at `/sys/fs/cgroup`.
    Unified,
    /// Only cgroup v1 controllers under `/sys/fs/cgroup/<controller>`.
    Legacy,
    /// v1 controllers plus an (empty) v2 hierarchy at `/sys/fs/cgroup/unified`.
    Hybrid,
}

impl fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupMode::Unified => "unified (v2)",
            CgroupMode::Legacy => "legacy (v1)",
            CgroupMode::Hybrid => "hybrid (v1 + v2)",
        })
    }
}

pub(crate) const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Where systemd mounts the v2 hierarchy on hybrid hosts. A C string because
/// [`detach_unified_hierarchy`] runs between fork and exec and must not
/// allocate.
const HYBRID_UNIFIED: &CStr = c"/sys/fs/cgroup/unified";

/// Detects the cgroup layout from the filesystem types of the mount points.
pub fn cgroup_mode() -> Result<CgroupMode, RuntimeError> {
    if is_cgroup2(Path::new(CGROUP_ROOT))? {
        return Ok(CgroupMode::Unified);
    }
    let unified = Path::new(OsStr::from_bytes(HYBRID_UNIFIED.to_bytes()));
    if unified.exists() && is_cgroup2(unified)? {
        return Ok(CgroupMode::Hybrid);
    }
    Ok(CgroupMode::Legacy)
}

fn is_cgroup2(path: &Path) -> Result<bool, RuntimeError> {
    let stat = nix::sys::statfs::statfs(path).map_err(|errno| {
        RuntimeError::io(
            format!(
                "cannot statfs {} to detect the cgroup layout",
                path.display()
            ),
            io::Error::from(errno),
        )
    })?;
    Ok(stat.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// Makes a hybrid host look like a pure v1 host to the calling process.
///
/// crun 1.8 refuses to run when a v2 hierarchy is mounted next to v1
/// controllers. Run between fork and exec of crun, this gives the child a
/// private mount namespace (with propagation off, so nothing leaks back to
/// the host) in which `/sys/fs/cgroup/unified` is detached; crun then drives
/// the v1 controllers exactly as on a legacy host. Containers it creates
/// start from that namespace, so they never see the v2 hierarchy either.
///
/// Only async-signal-safe system calls with static arguments are used: the
/// caller is a forked copy of a multi-threaded process.
pub(crate) fn detach_unified_hierarchy() -> io::Result<()> {
    // SAFETY: unshare, mount and umount2 are async-signal-safe system calls;
    // every pointer passed is a static NUL-terminated string or null.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        if libc::umount2(HYBRID_UNIFIED.as_ptr(), libc::MNT_DETACH) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_names_the_package() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = find_in("crun", "crun", &[dir.path().to_owned()]).expect_err("must be missing");
        let msg = err.to_string();
        assert!(matches!(err, RuntimeError::NotInstalled { .. }));
        assert!(msg.contains("Debian package `crun`"), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    }

    #[test]
    fn non_executable_files_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("tool"), b"#!/bin/sh\n").expect("write");
        assert!(find_in("tool", "tool", &[dir.path().to_owned()]).is_err());
    }

    #[test]
    fn detects_a_cgroup_mode() {
        cgroup_mode().expect("every Linux host has some cgroup layout");
    }
}
