//! The host tools the volume layer drives. They are the reference
//! implementations of ext4 and loop-device management, so roost calls them
//! instead of re-implementing their on-disk logic.

use crate::error::{Result, VolumeError};
use std::ffi::OsStr;
use std::process::Command;

/// A host program and the Debian package that provides it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

pub(crate) const MKFS_EXT4: Tool = Tool {
    program: "mkfs.ext4",
    package: "e2fsprogs",
};
pub(crate) const MKFS_XFS: Tool = Tool {
    program: "mkfs.xfs",
    package: "xfsprogs",
};
pub(crate) const XFS_GROWFS: Tool = Tool {
    program: "xfs_growfs",
    package: "xfsprogs",
};
pub(crate) const E2FSCK: Tool = Tool {
    program: "e2fsck",
    package: "e2fsprogs",
};
pub(crate) const RESIZE2FS: Tool = Tool {
    program: "resize2fs",
    package: "e2fsprogs",
};
pub(crate) const LOSETUP: Tool = Tool {
    program: "losetup",
    package: "mount",
};

/// Where Debian installs them; `PATH` of a daemon may lack the sbin dirs.
const SEARCH_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

impl Tool {
    /// Runs the tool and returns its stdout. Exit codes up to
    /// `max_ok_status` count as success (e2fsck reports "errors fixed" as 1).
    pub(crate) fn run_allowing<I, S>(self, args: I, max_ok_status: i32) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let path = SEARCH_DIRS
            .iter()
            .map(|dir| std::path::Path::new(dir).join(self.program))
            .find(|path| path.exists())
            .ok_or(VolumeError::MissingTool {
                program: self.program,
                package: self.package,
            })?;
        let output = Command::new(&path)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(VolumeError::at("run", &path))?;
        let ok = output
            .status
            .code()
            .is_some_and(|code| (0..=max_ok_status).contains(&code));
        if !ok {
            return Err(VolumeError::Tool {
                program: self.program,
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub(crate) fn run<I, S>(self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_allowing(args, 0)
    }
}
