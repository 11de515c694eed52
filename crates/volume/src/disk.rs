//! ext4 filesystems in sparse image files: creation, growth, sparse-aware
//! copies and capacity figures.

use crate::error::{Result, VolumeError};
use crate::tool::{E2FSCK, MKFS_EXT4, MKFS_XFS, RESIZE2FS, XFS_GROWFS};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The filesystem block size, and the granularity of sizes.
pub const BLOCK_SIZE: u64 = 4096;

/// Capacity figures of a filesystem, in blocks of `block_size` bytes, as
/// Fly's volume API reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub block_size: u64,
    pub blocks: u64,
    pub blocks_free: u64,
    /// Free blocks an unprivileged writer may use.
    pub blocks_avail: u64,
}

/// The filesystems a volume can hold.
///
/// ext4 is Fly's (and roost's preferred) volume filesystem, but the kernel
/// grows a mounted ext4 only for holders of `CAP_SYS_RESOURCE`, which
/// container-hosted roost hosts often lack; XFS grows online with
/// `CAP_SYS_ADMIN` alone. [`FsType::host_default`] picks the one that
/// keeps the platform's promise of online growth on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Xfs,
}

impl FsType {
    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }

    /// Parses a Fly `fstype` value.
    pub fn parse(name: &str) -> Option<FsType> {
        match name {
            "ext4" => Some(FsType::Ext4),
            "xfs" => Some(FsType::Xfs),
            _ => None,
        }
    }

    /// The smallest filesystem mkfs accepts.
    pub fn min_size(self) -> u64 {
        match self {
            FsType::Ext4 => 16 << 20,
            FsType::Xfs => 300 << 20,
        }
    }

    /// ext4 if this process may grow a mounted ext4, otherwise XFS.
    pub fn host_default() -> FsType {
        const CAP_SYS_RESOURCE: u32 = 24;
        let effective = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
                u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
            })
            .unwrap_or(0);
        if effective & (1 << CAP_SYS_RESOURCE) != 0 {
            FsType::Ext4
        } else {
            FsType::Xfs
        }
    }

    pub(crate) fn mount_options(self) -> Option<&'static str> {
        match self {
            FsType::Ext4 => None,
            // Forks and restores share their source's UUID, which XFS
            // otherwise refuses to mount twice.
            FsType::Xfs => Some("nouuid"),
        }
    }
}

/// Creates a sparse file of `size` bytes at `path` (replacing any) and
/// makes a filesystem in it. Nothing but metadata is written: mkfs punches
/// holes over the whole file first, so the kernel finds inode tables
/// already zero; ext4 gets no reserved blocks (the machine gets the whole
/// size).
pub(crate) fn make_filesystem(path: &Path, size: u64, fs: FsType) -> Result<()> {
    let file = File::create(path).map_err(VolumeError::at("create", path))?;
    file.set_len(size).map_err(VolumeError::at("size", path))?;
    match fs {
        FsType::Ext4 => MKFS_EXT4.run([
            "-q".as_ref(),
            "-F".as_ref(),
            "-b".as_ref(),
            "4096".as_ref(),
            "-m".as_ref(),
            "0".as_ref(),
            "-E".as_ref(),
            "lazy_itable_init=1,lazy_journal_init=1".as_ref(),
            path.as_os_str(),
        ])?,
        FsType::Xfs => MKFS_XFS.run(["-q".as_ref(), "-f".as_ref(), path.as_os_str()])?,
    };
    file.sync_all().map_err(VolumeError::at("fsync", path))
}

/// Grows the filesystem of the unmounted image `path` to the file's
/// length, where the filesystem can grow offline (ext4). XFS grows only
/// mounted: [`grow_mounted`] does it at the next attach. Running it again
/// after a crash finishes the job.
pub(crate) fn grow_unmounted(path: &Path) -> Result<()> {
    let (fs, fs_bytes) = filesystem_size(path)?;
    let len = std::fs::metadata(path)
        .map_err(VolumeError::at("stat", path))?
        .len();
    if fs != FsType::Ext4 || fs_bytes >= len {
        return Ok(());
    }
    // resize2fs insists on a freshly checked filesystem; -p repairs only
    // what is safe, and replays the journal of an image copied while mounted.
    E2FSCK.run_allowing(["-f".as_ref(), "-p".as_ref(), path.as_os_str()], 2)?;
    RESIZE2FS.run(["-f".as_ref(), path.as_os_str()])?;
    Ok(())
}

/// Grows the mounted filesystem on `device` (mounted at `mount`) to the
/// device's size. Returns false when the host forbids it (ext4 without
/// `CAP_SYS_RESOURCE`); the filesystem then grows at its next attach.
pub(crate) fn grow_mounted(fs: FsType, device: &Path, mount: &Path) -> Result<bool> {
    match fs {
        FsType::Ext4 => match RESIZE2FS.run([device.as_os_str()]) {
            Ok(_) => Ok(true),
            Err(VolumeError::Tool { stderr, .. }) if stderr.contains("Permission denied") => {
                tracing::warn!(device = %device.display(), "this host may not grow a mounted ext4 (no CAP_SYS_RESOURCE); it grows at the next attach");
                Ok(false)
            }
            Err(err) => Err(err),
        },
        FsType::Xfs => XFS_GROWFS.run([mount.as_os_str()]).map(|_| true),
    }
}

/// Makes `path` at least `size` bytes long (the new tail is a hole).
pub(crate) fn extend_file(path: &Path, size: u64) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(VolumeError::at("open", path))?;
    let current = file
        .metadata()
        .map_err(VolumeError::at("stat", path))?
        .len();
    if current < size {
        file.set_len(size)
            .map_err(VolumeError::at("extend", path))?;
        file.sync_all().map_err(VolumeError::at("fsync", path))?;
    }
    Ok(())
}

/// The byte ranges of `file` below `end` that hold data; everything else
/// is a hole. Uses `SEEK_DATA`/`SEEK_HOLE`, so holes are never read.
pub(crate) fn data_ranges(file: &File, end: u64) -> std::io::Result<Vec<(u64, u64)>> {
    use nix::unistd::{lseek, Whence};
    let fd = file.as_raw_fd();
    let mut ranges = Vec::new();
    let mut offset = 0u64;
    while offset < end {
        let start = match lseek(fd, offset as i64, Whence::SeekData) {
            Ok(start) => start as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(errno) => return Err(errno.into()),
        };
        if start >= end {
            break;
        }
        let stop = (lseek(fd, start as i64, Whence::SeekHole)? as u64).min(end);
        ranges.push((start, stop));
        offset = stop;
    }
    Ok(ranges)
}

/// Copies `src` to a new file `dst` of the same length, only where `src`
/// holds data, with in-kernel copies: the holes of a mostly empty volume
/// cost neither reads nor space. Returns the bytes copied.
pub(crate) fn sparse_copy(src: &Path, dst: &Path) -> Result<u64> {
    let input = File::open(src).map_err(VolumeError::at("open", src))?;
    let len = input
        .metadata()
        .map_err(VolumeError::at("stat", src))?
        .len();
    let output = File::create(dst).map_err(VolumeError::at("create", dst))?;
    output.set_len(len).map_err(VolumeError::at("size", dst))?;
    let mut copied = 0;
    for (start, stop) in data_ranges(&input, len).map_err(VolumeError::at("scan", src))? {
        let (mut off_in, mut off_out) = (start as i64, start as i64);
        while (off_in as u64) < stop {
            let want = (stop - off_in as u64).min(1 << 30) as usize;
            let n = nix::fcntl::copy_file_range(
                &input,
                Some(&mut off_in),
                &output,
                Some(&mut off_out),
                want,
            )
            .map_err(|e| VolumeError::io(format!("cannot copy {}", src.display()), e.into()))?;
            if n == 0 {
                return Err(VolumeError::Invalid(format!(
                    "{} shrank while it was being copied",
                    src.display()
                )));
            }
            copied += n as u64;
        }
    }
    output.sync_all().map_err(VolumeError::at("fsync", dst))?;
    Ok(copied)
}

/// Capacity of a mounted filesystem.
pub(crate) fn mounted_usage(mount: &Path) -> Result<Usage> {
    let stat = nix::sys::statvfs::statvfs(mount)
        .map_err(|e| VolumeError::io(format!("cannot statfs {}", mount.display()), e.into()))?;
    Ok(Usage {
        block_size: stat.fragment_size(),
        blocks: stat.blocks(),
        blocks_free: stat.blocks_free(),
        blocks_avail: stat.blocks_available(),
    })
}

/// The first 64 KiB hold the superblock of either filesystem.
fn read_superblock(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(VolumeError::at("open", path))?;
    let mut sb = vec![0u8; 4096];
    file.read_exact_at(&mut sb, 0)
        .map_err(VolumeError::at("read the superblock of", path))?;
    Ok(sb)
}

/// Capacity of an unmounted image, from its superblock (as recorded at
/// the last unmount), and its filesystem type.
fn superblock_usage(path: &Path) -> Result<(FsType, Usage, u64)> {
    let sb = read_superblock(path)?;
    let le32 = |at: usize| {
        u64::from(u32::from_le_bytes([
            sb[at],
            sb[at + 1],
            sb[at + 2],
            sb[at + 3],
        ]))
    };
    let be32 = |at: usize| {
        u64::from(u32::from_be_bytes([
            sb[at],
            sb[at + 1],
            sb[at + 2],
            sb[at + 3],
        ]))
    };
    let be64 = |at: usize| (be32(at) << 32) | be32(at + 4);
    const EXT4_MAGIC: u16 = 0xEF53;
    const EXT4_INCOMPAT_64BIT: u64 = 0x80;
    if &sb[..4] == b"XFSB" {
        let block_size = be32(4);
        let data_blocks = be64(8);
        let log_blocks = if be64(48) != 0 { be32(96) } else { 0 };
        let free = be64(144);
        let usage = Usage {
            block_size,
            blocks: data_blocks - log_blocks.min(data_blocks),
            blocks_free: free,
            blocks_avail: free,
        };
        return Ok((FsType::Xfs, usage, data_blocks * block_size));
    }
    let ext = &sb[1024..];
    if u16::from_le_bytes([ext[56], ext[57]]) != EXT4_MAGIC {
        return Err(VolumeError::Corrupt(format!(
            "{} holds neither ext4 nor XFS",
            path.display()
        )));
    }
    let field = |at: usize| le32(1024 + at);
    let wide = field(96) & EXT4_INCOMPAT_64BIT != 0;
    let count = |lo: usize, hi: usize| field(lo) | if wide { field(hi) << 32 } else { 0 };
    let blocks = count(4, 0x150);
    let reserved = count(8, 0x154);
    let free = count(12, 0x158);
    let block_size = 1024 << field(24);
    let usage = Usage {
        block_size,
        blocks,
        blocks_free: free,
        blocks_avail: free.saturating_sub(reserved),
    };
    Ok((FsType::Ext4, usage, blocks * block_size))
}

/// Capacity of an unmounted image.
pub(crate) fn image_usage(path: &Path) -> Result<Usage> {
    superblock_usage(path).map(|(_, usage, _)| usage)
}

/// The filesystem in an image and its size in bytes.
pub(crate) fn filesystem_size(path: &Path) -> Result<(FsType, u64)> {
    superblock_usage(path).map(|(fs, _, bytes)| (fs, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_ranges_skip_holes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let file = File::create(&path).expect("create");
        file.set_len(64 << 20).expect("size");
        file.write_all_at(&[1; 4096], 8 << 20).expect("write");
        file.write_all_at(&[2; 4096], 40 << 20).expect("write");
        let ranges = data_ranges(&file, 64 << 20).expect("ranges");
        assert_eq!(ranges.len(), 2, "{ranges:?}");
        assert!(ranges[0].0 <= 8 << 20 && ranges[0].1 >= (8 << 20) + 4096);
        let copy = dir.path().join("g");
        let copied = sparse_copy(&path, &copy).expect("copy");
        assert!(copied < 1 << 20, "copied {copied} bytes of a sparse file");
        assert_eq!(
            std::fs::read(&copy).expect("read"),
            std::fs::read(&path).expect("read")
        );
    }

    #[test]
    fn a_file_without_ext4_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, vec![0u8; 8192]).expect("write");
        assert!(matches!(image_usage(&path), Err(VolumeError::Corrupt(_))));
        assert_eq!(FsType::parse("xfs"), Some(FsType::Xfs));
        assert_eq!(FsType::parse("ntfs"), None);
    }
}
