//! roost-volume: persistent, sized filesystems for machines, with
//! snapshots, restores and forks.
//!
//! A volume is a filesystem (ext4, or XFS where the host cannot grow a
//! mounted ext4; see [`FsType`]) in a sparse image file, attached with a
//! loop device and mounted on the host while a machine uses it (the
//! machine gets a bind mount). The filesystem enforces the size, the
//! machine sees a real filesystem (`df` shows its capacity) and the image
//! costs only the blocks written. Volumes grow online (`resize2fs` or
//! `xfs_growfs` on the mounted filesystem). Forks and snapshots of a mounted volume freeze it
//! (FIFREEZE) for the copy, so they are crash-consistent: they hold every
//! write the machine fsynced before.
//!
//! [`VolumeHost`] manages the volumes of a directory; [`SnapshotStore`]
//! keeps snapshots as deduplicated, compressed chunks. Neither knows about
//! machines or the orchestrator's records: the caller decides which
//! volume is attached for whom.
//!
//! Host requirements: root, loop devices, `e2fsprogs` (mkfs.ext4, e2fsck,
//! resize2fs), `xfsprogs` (mkfs.xfs, xfs_growfs) and util-linux's `losetup`.

mod attach;
mod disk;
mod error;
mod host;
mod snapshots;
mod tool;

pub use disk::{FsType, Usage, BLOCK_SIZE};
pub use error::{Result, VolumeError};
pub use host::{VolumeHost, VolumePaths};
pub use snapshots::{SnapshotInfo, SnapshotStore, CHUNK_SIZE};
