//! roost-host: everything that touches this host for a machine, behind
//! one trait.
//!
//! The service (roost-machines) decides what happens to apps, machines and
//! volumes and keeps their records; [`HostAgent`] is how those decisions
//! reach a host: a machine's bundle and root filesystem, its container
//! (run, stop, signal, delete, exit, exec, `ps`, logs), its place on the
//! private network, the volumes mounted for it and their images and
//! snapshots, files inside it, and what recovery needs (the containers,
//! mounts and loop devices present, and removal of what nothing owns).
//! [`LocalHost`] does that on this host over roost-runtime, roost-net and
//! roost-volume; a second host is a remote implementation of the trait.
//!
//! The trait speaks in roost's terms: a machine id, its bundle, its
//! volumes, its network place. It must not know apps beyond the name a
//! resolver answers for, leases, the store or the lifecycle model: the
//! caller holds the machine's (and a volume's) lock, decides every step
//! and passes what a step needs. Every method can be repeated after a
//! crash with the same effect (the steps of durable operations are).

mod error;
mod guest_files;
mod local;
mod paths;
mod rootfs;

pub use error::{Blame, HostError, Result};
pub use guest_files::{check_guest_dir, check_guest_path, DirEntry, EntryKind};
pub use local::{LocalHost, LocalHostConfig};
pub use roost_net::dns::{Directory as DnsDirectory, Resolver as DnsResolver};
pub use roost_net::plan::SERVICE_EGRESS_PORT;
pub use roost_net::{AddressPlan, MachineNet, NetConfig};
pub use roost_runtime::{ExecOutput, LogRelay, OciRuntimeKind, ProcessInfo};
pub use roost_volume::{FsType, SnapshotInfo, Usage};

use nix::sys::signal::Signal;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

/// What a machine's bundle is made of: its image's layers, its main
/// process, its limits and the volumes mounted into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineBundle {
    pub id: String,
    /// The app, whose machines the internal DNS resolves by name.
    pub app: String,
    /// The image's layer directories, lowest first.
    pub layers: Vec<PathBuf>,
    /// The main process and its arguments.
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs of the main process.
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub memory_mb: u64,
    pub cpus: u32,
    /// A pseudo terminal for the main process (Fly's `init.tty`).
    pub terminal: bool,
    /// Volumes mounted into the machine, each at a guest path.
    pub volumes: Vec<VolumeMount>,
}

/// Volume `volume` at `path` inside a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub volume: String,
    pub path: String,
}

/// Who a machine's overlay root filesystem is mounted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsUse {
    /// The machine's container.
    Machine,
    /// File calls from the host on a machine at rest.
    Files,
}

/// How to stop a machine's main process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopSpec {
    /// The init's pid, when the caller knows it; otherwise the runtime is asked.
    pub pid: Option<u32>,
    /// The signal number to send first; SIGTERM when `None`.
    pub signal: Option<i32>,
    /// How long the process may take to exit before every process of the
    /// machine is killed.
    pub timeout: Duration,
}

/// A command to run in a started machine, with its main process's
/// environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    pub args: Vec<String>,
    /// Working directory; the runtime's default when `None`.
    pub cwd: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub timeout: Duration,
}

/// A filesystem inside a machine, as file calls address it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFs {
    /// Machine `id`'s root filesystem (its overlay, mounted).
    Rootfs(String),
    /// Volume `id`, mounted on the host.
    Volume(String),
}

/// One file call on a [`GuestFs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestOp {
    /// Up to `limit` bytes at `offset` of a regular file.
    Read { offset: u64, limit: u64 },
    /// Replace (or create, with missing parents) a regular file.
    Write { content: Vec<u8>, mode: u32 },
    /// A directory's entries, at most `max`.
    List { max: usize },
}

/// What a [`GuestOp`] gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestOutcome {
    /// The bytes read and the file's whole size.
    Read {
        data: Vec<u8>,
        size: u64,
    },
    Written,
    /// Entries sorted by name; `truncated` when more exist.
    Listed {
        entries: Vec<DirEntry>,
        truncated: bool,
    },
}

/// Where a machine's log is on the host: its output, oldest first (the
/// rotated file, then the current one; a file is listed once while a
/// rotation makes both names one file), and the file new output goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFiles {
    pub history: Vec<PathBuf>,
    pub current: PathBuf,
}

/// Everything the service asks of a host. Object-safe: the service holds
/// an `Arc<dyn HostAgent>`.
#[async_trait::async_trait]
pub trait HostAgent: Send + Sync {
    /// Whether runtime `kind` is installed on the host.
    fn has_runtime(&self, kind: OciRuntimeKind) -> bool;

    /// Writes the machine's layer list and OCI bundle (`config.json`):
    /// the expensive, image-dependent part of bringing a machine up.
    async fn prepare(&self, bundle: &MachineBundle) -> Result<()>;

    /// The layer directories the machine's bundle is built on; empty when
    /// it has no bundle.
    fn machine_layers(&self, id: &str) -> Result<Vec<PathBuf>>;

    /// Makes and mounts the machine's root filesystem disk of `size_gb`
    /// if needed, then empties the overlay's upper and work dirs.
    async fn reset_rootfs(&self, id: &str, size_gb: u64) -> Result<()>;

    /// Mounts the machine's overlay (its layers below its upper dir, on its
    /// disk of `size_gb`, made, grown and mounted if needed) for `purpose`,
    /// unless it is mounted; whether this call mounted it.
    async fn mount_rootfs(&self, id: &str, size_gb: u64, purpose: RootfsUse) -> Result<bool>;

    /// Unmounts the machine's overlay; a missing mount is fine.
    async fn unmount_rootfs(&self, id: &str) -> Result<()>;

    /// Makes `env` the main process's environment at its next start,
    /// rewriting the bundle only when it differs.
    async fn refresh_env(&self, id: &str, env: &[String]) -> Result<()>;

    /// Runs a file call in a machine's filesystem, which the caller has
    /// mounted (paths resolve inside it, regular files only).
    async fn guest_file(&self, fs: GuestFs, path: &str, op: GuestOp) -> Result<GuestOutcome>;

    /// Creates and starts the machine's container from its bundle under
    /// `runtime` and returns its init's pid. A running container is
    /// adopted, a stale one deleted first; a machine on the private
    /// network whose namespace is gone (a reboot empties /run) is
    /// connected again at `net` first.
    async fn run(&self, id: &str, runtime: OciRuntimeKind, net: Option<&MachineNet>)
        -> Result<u32>;

    /// The pid of the init of the machine's running container, if it runs.
    async fn running_pid(&self, id: &str, runtime: OciRuntimeKind) -> Result<Option<u32>>;

    /// Stops the machine's main process: the stop signal, then after the
    /// timeout SIGKILL to every process of the machine. Nothing running is
    /// fine.
    async fn stop(&self, id: &str, runtime: OciRuntimeKind, stop: &StopSpec) -> Result<()>;

    /// Sends `signal` to the machine's main process.
    async fn signal(&self, id: &str, runtime: OciRuntimeKind, signal: Signal) -> Result<()>;

    /// Kills what is left of the machine, deletes its container and waits
    /// (briefly) for its log relay to write the last output; a missing
    /// container is fine.
    async fn delete_container(&self, id: &str, runtime: OciRuntimeKind) -> Result<()>;

    /// Leaves a machine that is not started with no container and no
    /// overlay mounted (its disk and namespace stay).
    async fn put_to_rest(&self, id: &str, runtime: OciRuntimeKind) -> Result<()>;

    /// Waits for process `pid` (a machine's init) to exit; its exit code
    /// when it could be observed.
    async fn wait_for_exit(&self, pid: u32) -> Result<Option<i32>>;

    /// The processes of the machine whose init is `pid`.
    async fn processes(&self, pid: u32) -> Result<Vec<ProcessInfo>>;

    /// Runs a command in the machine's running container with the
    /// environment its main process started with.
    async fn exec(&self, id: &str, runtime: OciRuntimeKind, exec: &ExecSpec) -> Result<ExecOutput>;

    /// Where the machine's log is.
    fn log_files(&self, id: &str) -> LogFiles;

    /// Unmounts the machine's disk and removes everything of it on the
    /// host (bundle, disk, logs); a missing one is fine.
    async fn remove_machine(&self, id: &str) -> Result<()>;

    /// Recovery: deletes containers of machines not in `known`, removes
    /// the files of machines not in `live` (destroyed or never recorded),
    /// and releases loop devices of disks no `live` machine owns.
    async fn remove_orphan_machines(
        &self,
        known: &HashSet<String>,
        live: &HashSet<String>,
    ) -> Result<()>;

    /// The private network's address plan; `None` without a private
    /// network, when each machine is alone with its loopback.
    fn network(&self) -> Option<AddressPlan>;

    /// Makes the machine's namespace, veth and address (a no-op for what
    /// exists).
    async fn connect_network(&self, net: &MachineNet) -> Result<()>;

    /// Removes the machine's namespace and veth; missing ones are fine.
    async fn disconnect_network(&self, id: &str) -> Result<()>;

    /// Removes app network `network`'s bridge.
    async fn remove_app_network(&self, network: u16) -> Result<()>;

    /// Recovery: removes namespaces of machines not in `live` and bridges
    /// of networks not in `networks`.
    async fn remove_orphan_networks(
        &self,
        live: &HashSet<String>,
        networks: &HashSet<u16>,
    ) -> Result<()>;

    /// The size of the filesystem volumes are kept on, in GiB, when known.
    fn volume_space_gb(&self) -> Option<u64>;

    /// The filesystem new volumes get when the request names none.
    fn default_fstype(&self) -> FsType;

    /// Volumes with an image or a mount point on the host.
    fn volumes(&self) -> Result<Vec<String>>;

    /// Whether volume `id` has an image on the host.
    fn volume_exists(&self, id: &str) -> bool;

    /// Whether volume `id` is mounted on the host.
    fn volume_mounted(&self, id: &str) -> bool;

    /// The machine volume `id` is mounted for, if any.
    fn volume_holder(&self, id: &str) -> Option<String>;

    /// Volume `id`'s filesystem capacity and use.
    fn volume_usage(&self, id: &str) -> Result<Usage>;

    /// An empty volume image of `size` bytes.
    async fn create_volume(&self, id: &str, size: u64, fs: FsType) -> Result<()>;

    /// Volume `id` of `size` bytes from snapshot `snapshot`.
    async fn restore_volume(&self, id: &str, snapshot: &str, size: u64) -> Result<()>;

    /// Volume `id` of `size` bytes as a copy of volume `source` (frozen
    /// for the copy while mounted). The caller holds `source`'s lock.
    async fn fork_volume(&self, source: &str, id: &str, size: u64) -> Result<()>;

    /// Grows volume `id` to `size` bytes; whether its filesystem has the
    /// size already (a mounted one may need its machine to restart).
    async fn grow_volume(&self, id: &str, size: u64) -> Result<bool>;

    /// Takes snapshot `snapshot` of volume `id`.
    async fn snapshot_volume(&self, id: &str, snapshot: &str) -> Result<SnapshotInfo>;

    /// Thaws volume `id` and deletes snapshot `snapshot`: what a snapshot
    /// cut short leaves.
    async fn discard_snapshot(&self, id: &str, snapshot: &str) -> Result<()>;

    /// Deletes snapshot `snapshot`.
    async fn delete_snapshot(&self, snapshot: &str) -> Result<()>;

    /// Deletes the snapshot chunks no snapshot uses.
    async fn collect_snapshot_garbage(&self) -> Result<()>;

    /// Unmounts volume `id` and removes its image; a missing one is fine.
    async fn remove_volume(&self, id: &str) -> Result<()>;

    /// Mounts volume `id` on the host for machine `machine` (a no-op when
    /// it is mounted for it already).
    async fn attach_volume(&self, id: &str, machine: &str) -> Result<()>;

    /// Unmounts volume `id` from the host and releases its loop device.
    async fn detach_volume(&self, id: &str) -> Result<()>;

    /// Thaws volume `id` if a killed snapshot left it frozen.
    fn thaw_volume(&self, id: &str) -> Result<()>;

    /// Recovery: releases loop devices of volumes not in `live`.
    async fn release_stray_volume_loops(&self, live: &HashSet<String>) -> Result<()>;
}
