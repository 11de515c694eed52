//! Files inside machines, read and written from the host: a robot edits
//! code in a machine whether it runs or sleeps.
//!
//! A started machine's root filesystem is its mounted overlay. A created or
//! stopped machine has none mounted (see the crate invariants), so the
//! overlay is mounted for the length of the call and unmounted after, under
//! the machine's lock so that no start or stop interleaves. A crash in
//! between leaves a mount that recovery removes, as it unmounts the rootfs
//! of every machine that is not started. Paths are resolved inside the
//! rootfs only (see `guest_files`).
//!
//! A path under one of the machine's volume mounts (config `mounts`) is
//! served from that volume instead, as the machine sees it: from its host
//! mount point while the machine runs, or with the volume mounted for the
//! length of the call while it rests. Resolution then stays inside the
//! volume's filesystem.

use crate::error::{MachineError, Result};
use crate::{Inner, Service};
use roost_host::{
    check_guest_dir, check_guest_path, DirEntry, GuestFs, GuestOp, GuestOutcome, HostError,
    RootfsUse,
};
use roost_lifecycle::{Right, Target};
use roost_types::MachineMount;
use std::path::Path;

/// Most bytes one [`Service::read_file`] returns (also its default).
pub const MAX_READ_BYTES: u64 = 1024 * 1024;
/// Largest file [`Service::write_file`] writes in one call.
pub const MAX_WRITE_BYTES: usize = 2 * 1024 * 1024;
/// Most entries one [`Service::list_dir`] returns.
pub const MAX_DIR_ENTRIES: usize = 1000;
/// Most log lines one [`Service::log_tail`] returns.
pub const MAX_LOG_LINES: usize = 2000;

/// A slice of a file in a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent {
    /// The file's whole size in bytes.
    pub size: u64,
    pub offset: u64,
    pub data: Vec<u8>,
}

impl FileContent {
    /// Whether `data` reaches the end of the file.
    pub fn eof(&self) -> bool {
        self.offset + self.data.len() as u64 >= self.size
    }
}

/// The entries of a directory in a machine, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DirListing {
    pub entries: Vec<DirEntry>,
    /// More than [`MAX_DIR_ENTRIES`] entries exist; the rest were left out.
    pub truncated: bool,
}

impl Service {
    /// Reads up to `limit` bytes (default and maximum [`MAX_READ_BYTES`])
    /// at `offset` of the regular file `path` in the machine.
    pub async fn read_file(
        &self,
        app: &str,
        id: &str,
        path: &str,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<FileContent> {
        let inner = self.authorize(Right::Files, Target::Machine { app, id })?;
        check_guest_path(path).map_err(MachineError::Invalid)?;
        let limit = limit.unwrap_or(MAX_READ_BYTES);
        if limit == 0 || limit > MAX_READ_BYTES {
            return Err(MachineError::Invalid(format!(
                "limit = {limit} is invalid: allowed values are 1 to {MAX_READ_BYTES} bytes; read larger files in pieces with offset"
            )));
        }
        match inner
            .with_guest_fs(app, id, path, GuestOp::Read { offset, limit })
            .await?
        {
            GuestOutcome::Read { data, size } => Ok(FileContent { size, offset, data }),
            other => Err(unexpected(other)),
        }
    }

    /// Writes `content` to `path` in the machine, creating missing parent
    /// directories (mode 0755) and replacing an existing file; the file gets
    /// permission bits `mode`.
    pub async fn write_file(
        &self,
        app: &str,
        id: &str,
        path: &str,
        content: Vec<u8>,
        mode: u32,
    ) -> Result<()> {
        let inner = self.authorize(Right::Files, Target::Machine { app, id })?;
        check_guest_path(path).map_err(MachineError::Invalid)?;
        if mode > 0o7777 {
            return Err(MachineError::Invalid(format!(
                "mode {mode:o} is invalid: use permission bits such as 644 or 755 (octal)"
            )));
        }
        if content.len() > MAX_WRITE_BYTES {
            return Err(MachineError::Invalid(format!(
                "content is {} bytes; at most {MAX_WRITE_BYTES} bytes can be written in one call",
                content.len()
            )));
        }
        match inner
            .with_guest_fs(app, id, path, GuestOp::Write { content, mode })
            .await?
        {
            GuestOutcome::Written => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Lists the directory `path` in the machine (at most
    /// [`MAX_DIR_ENTRIES`] entries); symlinks are reported, not followed.
    pub async fn list_dir(&self, app: &str, id: &str, path: &str) -> Result<DirListing> {
        let inner = self.authorize(Right::Files, Target::Machine { app, id })?;
        check_guest_dir(path).map_err(MachineError::Invalid)?;
        let list = GuestOp::List {
            max: MAX_DIR_ENTRIES,
        };
        match inner.with_guest_fs(app, id, path, list).await? {
            GuestOutcome::Listed { entries, truncated } => Ok(DirListing { entries, truncated }),
            other => Err(unexpected(other)),
        }
    }

    /// The last `lines` lines (at most [`MAX_LOG_LINES`]) of the machine's
    /// main process output, oldest first.
    pub fn log_tail(&self, app: &str, id: &str, lines: usize) -> Result<String> {
        let inner = self.authorize(Right::Read, Target::Machine { app, id })?;
        if lines == 0 || lines > MAX_LOG_LINES {
            return Err(MachineError::Invalid(format!(
                "lines = {lines} is invalid: allowed values are 1 to {MAX_LOG_LINES}"
            )));
        }
        let mut text = Vec::new();
        for file in inner.log_files(app, id)?.history {
            match std::fs::read(&file) {
                Ok(bytes) => text.extend(bytes),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err.into()),
            }
        }
        let text = String::from_utf8_lossy(&text);
        let start = text
            .trim_end_matches('\n')
            .rmatch_indices('\n')
            .nth(lines - 1)
            .map_or(0, |(at, _)| at + 1);
        Ok(text[start..].to_string())
    }
}

impl Inner {
    /// Runs `op` on the filesystem that holds `path` in the machine (its
    /// rootfs, or the volume mounted over that part of the tree) with the
    /// path as seen from that filesystem's root, mounting it meanwhile if the
    /// machine is not running. Holds the machine's lock.
    async fn with_guest_fs(
        &self,
        app: &str,
        id: &str,
        path: &str,
        op: GuestOp,
    ) -> Result<GuestOutcome> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let record = self.machine(app, id)?;
        crate::machines::decide(&record, &roost_lifecycle::Intent::Files)?;
        let (fs, guest, mounted_here) = match volume_holding(&record.config.mounts, path) {
            Some((mount, guest)) => {
                let mounted_here = !self.host.volume_mounted(&mount.volume);
                self.attach_volume(&mount.volume, id).await?;
                (GuestFs::Volume(mount.volume.clone()), guest, mounted_here)
            }
            None => {
                let size_gb = crate::spec::rootfs_size_gb(&record.config);
                let mounted_here = self
                    .host
                    .mount_rootfs(id, size_gb, RootfsUse::Files)
                    .await?;
                if mounted_here {
                    tracing::debug!(machine = %id, "mounted the rootfs of a machine at rest for file access");
                }
                (
                    GuestFs::Rootfs(id.to_string()),
                    path.to_string(),
                    mounted_here,
                )
            }
        };
        let outcome = self.host.guest_file(fs.clone(), &guest, op).await;
        if mounted_here {
            self.unmount_after_files(id, fs).await;
        }
        outcome.map_err(|err| match err {
            HostError::Guest(err) => file_error(id, path, err),
            other => other.into(),
        })
    }

    /// Undoes a mount [`Inner::with_guest_fs`] made for a machine at rest.
    async fn unmount_after_files(&self, id: &str, mounted: GuestFs) {
        let result = match mounted {
            GuestFs::Rootfs(_) => self
                .host
                .unmount_rootfs(id)
                .await
                .map_err(MachineError::from),
            GuestFs::Volume(volume) => self.detach_volume(&volume).await,
        };
        if let Err(err) = result {
            tracing::warn!(machine = %id, error = %err, "cannot unmount after file access; recovery will");
        }
    }
}

/// A host that answered a file call with another kind of call's outcome.
fn unexpected(outcome: GuestOutcome) -> MachineError {
    let kind = match outcome {
        GuestOutcome::Read { .. } => "a read",
        GuestOutcome::Written => "a write",
        GuestOutcome::Listed { .. } => "a listing",
    };
    MachineError::Internal(format!("the host answered a file call with {kind}"))
}

/// The mount whose volume holds guest `path` (the deepest, if mounts nest)
/// and the path as seen from the volume's root.
fn volume_holding<'m>(
    mounts: &'m [MachineMount],
    path: &str,
) -> Option<(&'m MachineMount, String)> {
    let path = Path::new(path);
    mounts
        .iter()
        .filter_map(|mount| {
            let rest = path.strip_prefix(&mount.path).ok()?;
            Some((
                mount,
                Path::new("/").join(rest).to_string_lossy().into_owned(),
            ))
        })
        .max_by_key(|(mount, _)| Path::new(&mount.path).components().count())
}

/// A file error as the robot should read it: what is wrong with the path.
fn file_error(id: &str, path: &str, err: std::io::Error) -> MachineError {
    use std::io::ErrorKind as K;
    if err.raw_os_error() == Some(nix::libc::ELOOP) {
        return MachineError::Invalid(format!(
            "{path} in machine {id} goes through too many symlinks"
        ));
    }
    match err.kind() {
        K::NotFound => MachineError::NotFound(format!(
            "{path} does not exist in machine {id}; list its parent directory to see what is there"
        )),
        K::IsADirectory => MachineError::Invalid(format!(
            "{path} is a directory in machine {id}, not a file; list it instead"
        )),
        K::NotADirectory => MachineError::Invalid(format!(
            "a component of {path} is not a directory in machine {id}"
        )),
        K::InvalidInput => MachineError::Invalid(err.to_string()),
        _ => MachineError::Internal(format!("{path} in machine {id}: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(volume: &str, path: &str) -> MachineMount {
        MachineMount {
            volume: volume.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn paths_under_a_mount_go_to_its_volume() {
        let mounts = [mount("vol_a", "/data"), mount("vol_b", "/data/cache")];
        let holding =
            |path| volume_holding(&mounts, path).map(|(m, rest)| (m.volume.clone(), rest));
        assert_eq!(holding("/data/x/y"), Some(("vol_a".into(), "/x/y".into())));
        assert_eq!(holding("/data"), Some(("vol_a".into(), "/".into())));
        assert_eq!(
            holding("/data/cache/z"),
            Some(("vol_b".into(), "/z".into()))
        );
        assert_eq!(holding("/database/x"), None);
        assert_eq!(holding("/etc/passwd"), None);
    }
}
