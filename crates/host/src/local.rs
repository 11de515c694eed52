//! [`LocalHost`]: the host agent of the host roost runs on, over
//! roost-runtime (containers, bundles, overlays), roost-net (the private
//! network) and roost-volume (volume images and machines' disks).
//!
//! Layout under the data dir: `machines/<id>/` holds a machine's bundle,
//! layer list, disk and logs ([`MachinePaths`]), `volumes/<id>/` a
//! volume's image and mount point, `snapshots/` the snapshot store,
//! `runtime/{crun,runc}/` the runtimes' state. Nothing here is a record:
//! the kernel, the runtimes and these files are the truth about the host,
//! so a restarted daemon finds what the previous one left.

use crate::error::{HostError, Result};
use crate::paths::MachinePaths;
use crate::rootfs::RootfsDisks;
use crate::{
    guest_files, AddressPlan, ExecSpec, GuestFs, GuestOp, GuestOutcome, HostAgent, LogFiles,
    MachineBundle, MachineNet, NetConfig, RootfsUse, StopSpec,
};
use nix::sys::signal::Signal;
use roost_runtime::rootfs::OverlayUse;
use roost_runtime::{ContainerStatus, ExecOutput, LogRelay, OciRuntimeKind, ProcessInfo, Runtime};
use roost_volume::{FsType, SnapshotInfo, SnapshotStore, Usage, VolumeHost};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a SIGKILLed machine's processes may take to exit (each of the
/// cgroup kill and the init's exit) before stop reports an error.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// How long deleting a container waits for its log relay to write the last
/// output and end (milliseconds, unless something outside the container
/// still holds the machine's output pipe).
const LOG_RELAY_GRACE: Duration = Duration::from_secs(2);

/// What [`LocalHost::open`] needs.
#[derive(Debug, Clone)]
pub struct LocalHostConfig {
    pub data_dir: PathBuf,
    /// The runtime machines get when their config names none: it must be
    /// installed.
    pub default_runtime: OciRuntimeKind,
    /// The program that writes machines' output into their logs.
    pub log_relay: LogRelay,
    /// The machines' private network; `None` leaves each machine alone in
    /// a namespace with only loopback.
    pub network: Option<NetConfig>,
}

/// This host. Cheap to share (the service holds it as an `Arc<dyn HostAgent>`).
pub struct LocalHost {
    data_dir: PathBuf,
    crun: Option<Runtime>,
    runc: Option<Runtime>,
    log_relay: LogRelay,
    rootfs: RootfsDisks,
    volumes: VolumeHost,
    snapshots: Arc<SnapshotStore>,
    volume_space_gb: Option<u64>,
    net: Option<roost_net::Network>,
}

impl LocalHost {
    /// Finds the runtimes, becomes the subreaper of machines, opens the
    /// volume and disk directories and sets up the private network's host
    /// side (after claiming its netns dir: another daemon's dir would lose
    /// its namespaces to this one's orphan sweep).
    pub async fn open(config: LocalHostConfig) -> Result<LocalHost> {
        let runtime = |kind: OciRuntimeKind| {
            Runtime::new(kind, config.data_dir.join("runtime").join(kind.to_string()))
        };
        let crun = runtime(OciRuntimeKind::Crun);
        let runc = runtime(OciRuntimeKind::Runc);
        let default_available = match config.default_runtime {
            OciRuntimeKind::Crun => crun.as_ref().err(),
            OciRuntimeKind::Runc => runc.as_ref().err(),
        };
        if let Some(err) = default_available {
            return Err(HostError::Internal(format!(
                "the default OCI runtime is unusable: {err}"
            )));
        }
        roost_runtime::set_child_subreaper()?;
        let volumes = VolumeHost::open(config.data_dir.join("volumes"))?;
        let snapshots = SnapshotStore::open(config.data_dir.join("snapshots"))?;
        let volume_space_gb = nix::sys::statvfs::statvfs(&config.data_dir)
            .map(|s| s.blocks() * s.fragment_size() / (1 << 30))
            .ok();
        // Also makes `machines/` 0700: machines' root filesystems and logs
        // hold setuid files a machine planted, which another local user
        // could otherwise run as root.
        let rootfs = RootfsDisks::open(&config.data_dir)?;
        let net = match config.network {
            Some(net_config) => {
                let net = roost_net::Network::new(net_config)?;
                net.claim_netns_dir(&std::fs::canonicalize(&config.data_dir)?)?;
                net.setup_host().await.map_err(HostError::NetworkRefused)?;
                Some(net)
            }
            None => None,
        };
        Ok(LocalHost {
            data_dir: config.data_dir,
            crun: crun.ok(),
            runc: runc.ok(),
            log_relay: config.log_relay,
            rootfs,
            volumes,
            snapshots: Arc::new(snapshots),
            volume_space_gb,
            net,
        })
    }

    fn paths(&self, id: &str) -> MachinePaths {
        MachinePaths::new(&self.data_dir, id)
    }

    fn runtime(&self, kind: OciRuntimeKind) -> Result<&Runtime> {
        match kind {
            OciRuntimeKind::Crun => self.crun.as_ref(),
            OciRuntimeKind::Runc => self.runc.as_ref(),
        }
        .ok_or_else(|| HostError::Internal(format!("runtime {kind} vanished")))
    }

    /// Makes and mounts the machine's root filesystem disk, of `size_gb`,
    /// unless that is done ([`crate::rootfs`]).
    fn ensure_disk(&self, paths: &MachinePaths, id: &str, size_gb: u64) -> Result<()> {
        self.rootfs.ensure(paths, id, size_gb)
    }

    /// Reconnects a machine whose namespace is gone (a reboot empties
    /// /run). Otherwise one `statfs`, nothing more.
    async fn ensure_network(&self, id: &str, place: Option<&MachineNet>) -> Result<()> {
        match &self.net {
            Some(net) if !net.is_connected(id) => {
                tracing::info!(machine = %id, "network namespace missing; recreating it");
                let place = place.ok_or_else(|| {
                    HostError::Internal(format!("machine {id} has no private address allocated"))
                })?;
                Ok(net.connect(place).await?)
            }
            _ => Ok(()),
        }
    }

    /// Every process of the machine, killed through its cgroup: SIGKILL
    /// to the init alone leaves a fork bomb racing the teardown of its pid
    /// namespace.
    async fn kill_all(&self, id: &str) -> Result<()> {
        Ok(roost_runtime::cgroup::kill_all(&cgroup_name(id), KILL_GRACE).await?)
    }

    /// Where volume `id` is mounted on the host while its machine runs.
    fn volume_dir(&self, id: &str) -> PathBuf {
        self.volumes.paths(id).mount
    }
}

#[async_trait::async_trait]
impl HostAgent for LocalHost {
    fn has_runtime(&self, kind: OciRuntimeKind) -> bool {
        self.runtime(kind).is_ok()
    }

    async fn prepare(&self, bundle: &MachineBundle) -> Result<()> {
        let paths = self.paths(&bundle.id);
        for dir in [&paths.dir, &paths.bundle, &paths.rootfs] {
            std::fs::create_dir_all(dir)?;
        }
        let lower_text: String = bundle
            .layers
            .iter()
            .map(|p| format!("{}\n", p.display()))
            .collect();
        write_atomically(&paths.lower, lower_text.as_bytes())?;
        let mut mounts: Vec<roost_runtime::BindMount> = bundle
            .volumes
            .iter()
            .map(|mount| roost_runtime::BindMount {
                source: self.volume_dir(&mount.volume),
                destination: mount.path.clone(),
            })
            .collect();
        if let Some(net) = &self.net {
            write_atomically(&paths.resolv_conf, net.resolv_conf(&bundle.app).as_bytes())?;
            mounts.push(roost_runtime::BindMount {
                source: paths.resolv_conf.clone(),
                destination: "/etc/resolv.conf".into(),
            });
        }
        let config = roost_runtime::BundleConfig {
            hostname: bundle.id.clone(),
            args: bundle.args.clone(),
            env: bundle.env.clone(),
            cwd: bundle.cwd.clone(),
            uid: bundle.uid,
            gid: bundle.gid,
            memory_mb: Some(bundle.memory_mb),
            cpus: Some(bundle.cpus),
            rootfs: paths.rootfs.clone(),
            cgroup_name: cgroup_name(&bundle.id),
            terminal: bundle.terminal,
            mounts,
            netns: self.net.as_ref().map(|net| net.netns_path(&bundle.id)),
        };
        roost_runtime::write_bundle(&paths.bundle, &config)?;
        Ok(())
    }

    fn machine_layers(&self, id: &str) -> Result<Vec<PathBuf>> {
        let paths = self.paths(id);
        if !paths.lower.exists() {
            return Ok(Vec::new());
        }
        read_lower_file(&paths)
    }

    async fn reset_rootfs(&self, id: &str, size_gb: u64) -> Result<()> {
        let paths = self.paths(id);
        self.ensure_disk(&paths, id, size_gb)?;
        reset_dir_contents(&paths.upper)?;
        reset_dir_contents(&paths.work)?;
        Ok(())
    }

    async fn mount_rootfs(&self, id: &str, size_gb: u64, purpose: RootfsUse) -> Result<bool> {
        let paths = self.paths(id);
        if roost_runtime::rootfs::is_mounted(&paths.rootfs) {
            return Ok(false);
        }
        self.ensure_disk(&paths, id, size_gb)?;
        // The layer list is lowest first; overlayfs wants the topmost first.
        let mut lowers = read_lower_file(&paths)?;
        lowers.reverse();
        let purpose = match purpose {
            RootfsUse::Machine => OverlayUse::Machine,
            RootfsUse::Files => OverlayUse::Host,
        };
        roost_runtime::rootfs::mount_overlay(
            &lowers,
            &paths.upper,
            &paths.work,
            &paths.rootfs,
            purpose,
        )?;
        Ok(true)
    }

    async fn unmount_rootfs(&self, id: &str) -> Result<()> {
        Ok(roost_runtime::rootfs::unmount(&self.paths(id).rootfs)?)
    }

    async fn refresh_env(&self, id: &str, env: &[String]) -> Result<()> {
        roost_runtime::set_bundle_env(&self.paths(id).bundle, env)?;
        Ok(())
    }

    async fn guest_file(&self, fs: GuestFs, path: &str, op: GuestOp) -> Result<GuestOutcome> {
        let root = match &fs {
            GuestFs::Rootfs(id) => self.paths(id).rootfs,
            GuestFs::Volume(id) => self.volume_dir(id),
        };
        let path = path.to_string();
        blocking(move || match op {
            GuestOp::Read { offset, limit } => guest_files::read_file(&root, &path, offset, limit)
                .map(|(data, size)| GuestOutcome::Read { data, size }),
            GuestOp::Write { content, mode } => {
                guest_files::write_file(&root, &path, &content, mode)
                    .map(|()| GuestOutcome::Written)
            }
            GuestOp::List { max } => guest_files::list_dir(&root, &path, max)
                .map(|(entries, truncated)| GuestOutcome::Listed { entries, truncated }),
        })
        .await?
        .map_err(HostError::Guest)
    }

    async fn run(
        &self,
        id: &str,
        runtime: OciRuntimeKind,
        net: Option<&MachineNet>,
    ) -> Result<u32> {
        let runtime = self.runtime(runtime)?;
        if let Some(state) = runtime.state(id).await? {
            if state.status == ContainerStatus::Running {
                if let Some(pid) = state.pid {
                    return Ok(pid);
                }
            }
            runtime.delete(id, true).await?;
        }
        self.ensure_network(id, net).await?;
        let paths = self.paths(id);
        // create + start rather than `run --detach`: measured faster with
        // crun 1.8, whose `run` waits for the container's process to start.
        let pid = runtime
            .create(id, &paths.bundle, &paths.log, &self.log_relay)
            .await?;
        runtime.start(id).await?;
        Ok(pid)
    }

    async fn running_pid(&self, id: &str, runtime: OciRuntimeKind) -> Result<Option<u32>> {
        Ok(self
            .runtime(runtime)?
            .state(id)
            .await?
            .filter(|state| state.status == ContainerStatus::Running)
            .and_then(|state| state.pid))
    }

    async fn stop(&self, id: &str, runtime: OciRuntimeKind, stop: &StopSpec) -> Result<()> {
        // The caller knows the init's pid on every path but a crash between
        // starting the container and recording it; only then ask the runtime.
        let pid = match stop.pid {
            Some(pid) => pid,
            None => match self.running_pid(id, runtime).await? {
                Some(pid) => pid,
                None => return Ok(()),
            },
        };
        let signal = stop
            .signal
            .and_then(|n| Signal::try_from(n).ok())
            .unwrap_or(Signal::SIGTERM);
        if signal != Signal::SIGKILL {
            self.runtime(runtime)?.kill(id, signal).await?;
            if tokio::time::timeout(stop.timeout, roost_runtime::wait_for_exit(pid))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tracing::info!(
                machine = id,
                "main process ignored {signal} for {:?}; killing it",
                stop.timeout
            );
        }
        self.kill_all(id).await?;
        tokio::time::timeout(KILL_GRACE, roost_runtime::wait_for_exit(pid))
            .await
            .map_err(|_| {
                HostError::Internal(format!(
                    "machine {id} did not exit {KILL_GRACE:?} after SIGKILL"
                ))
            })??;
        Ok(())
    }

    async fn signal(&self, id: &str, runtime: OciRuntimeKind, signal: Signal) -> Result<()> {
        Ok(self.runtime(runtime)?.kill(id, signal).await?)
    }

    async fn delete_container(&self, id: &str, runtime: OciRuntimeKind) -> Result<()> {
        // Whatever the machine forked dies with it, so the runtime can
        // remove its cgroups.
        self.kill_all(id).await?;
        self.runtime(runtime)?.delete(id, true).await?;
        if !roost_runtime::logs::wait_for_relay(&self.paths(id).log, LOG_RELAY_GRACE).await {
            tracing::warn!(machine = %id, "the log relay still runs after the container was deleted");
        }
        Ok(())
    }

    async fn put_to_rest(&self, id: &str, runtime: OciRuntimeKind) -> Result<()> {
        self.runtime(runtime)?.delete(id, true).await?;
        self.unmount_rootfs(id).await
    }

    async fn wait_for_exit(&self, pid: u32) -> Result<Option<i32>> {
        Ok(roost_runtime::wait_for_exit(pid).await?)
    }

    async fn processes(&self, pid: u32) -> Result<Vec<ProcessInfo>> {
        Ok(roost_runtime::processes(pid)?)
    }

    async fn exec(&self, id: &str, runtime: OciRuntimeKind, exec: &ExecSpec) -> Result<ExecOutput> {
        let request = roost_runtime::ExecRequest {
            args: exec.args.clone(),
            env: roost_runtime::bundle_env(&self.paths(id).bundle)?,
            cwd: exec.cwd.clone(),
            uid: exec.uid,
            gid: exec.gid,
            timeout: exec.timeout,
        };
        Ok(self.runtime(runtime)?.exec(id, &request).await?)
    }

    fn log_files(&self, id: &str) -> LogFiles {
        use std::os::unix::fs::MetadataExt;
        let paths = self.paths(id);
        let mut seen = Vec::new();
        let history = [paths.rotated_log(), paths.log.clone()]
            .into_iter()
            .filter(|p| match std::fs::metadata(p) {
                Ok(meta) if !seen.contains(&meta.ino()) => {
                    seen.push(meta.ino());
                    true
                }
                _ => false,
            })
            .collect();
        LogFiles {
            history,
            current: paths.log,
        }
    }

    async fn remove_machine(&self, id: &str) -> Result<()> {
        self.rootfs.remove(id)
    }

    async fn remove_orphan_machines(
        &self,
        known: &HashSet<String>,
        live: &HashSet<String>,
    ) -> Result<()> {
        for runtime in [&self.crun, &self.runc].into_iter().flatten() {
            for id in runtime.list().await? {
                if !known.contains(&id) {
                    tracing::warn!(container = %id, "removing orphaned container");
                    runtime.delete(&id, true).await?;
                }
            }
        }
        for entry in std::fs::read_dir(self.data_dir.join("machines"))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if !live.contains(&name) {
                self.unmount_rootfs(&name).await?;
                tracing::warn!(machine = %name, "removing orphaned machine files");
                self.rootfs.remove(&name)?;
            }
        }
        self.rootfs.release_strays(|id| live.contains(id))
    }

    fn network(&self) -> Option<AddressPlan> {
        self.net.as_ref().map(|net| *net.plan())
    }

    async fn connect_network(&self, place: &MachineNet) -> Result<()> {
        match &self.net {
            Some(net) => Ok(net.connect(place).await?),
            None => Ok(()),
        }
    }

    async fn disconnect_network(&self, id: &str) -> Result<()> {
        match &self.net {
            Some(net) => Ok(net.disconnect(id).await?),
            None => Ok(()),
        }
    }

    async fn remove_app_network(&self, network: u16) -> Result<()> {
        match &self.net {
            Some(net) => Ok(net.remove_app(network).await?),
            None => Ok(()),
        }
    }

    async fn remove_orphan_networks(
        &self,
        live: &HashSet<String>,
        networks: &HashSet<u16>,
    ) -> Result<()> {
        match &self.net {
            Some(net) => Ok(net
                .remove_orphans(|id| live.contains(id), |n| networks.contains(&n))
                .await?),
            None => Ok(()),
        }
    }

    fn volume_space_gb(&self) -> Option<u64> {
        self.volume_space_gb
    }

    fn default_fstype(&self) -> FsType {
        FsType::host_default()
    }

    fn volumes(&self) -> Result<Vec<String>> {
        Ok(self.volumes.ids()?)
    }

    fn volume_exists(&self, id: &str) -> bool {
        self.volumes.exists(id)
    }

    fn volume_mounted(&self, id: &str) -> bool {
        self.volumes.is_mounted(id)
    }

    fn volume_holder(&self, id: &str) -> Option<String> {
        self.volumes.holder(id)
    }

    fn volume_usage(&self, id: &str) -> Result<Usage> {
        Ok(self.volumes.usage(id)?)
    }

    async fn create_volume(&self, id: &str, size: u64, fs: FsType) -> Result<()> {
        let (host, id) = (self.volumes.clone(), id.to_string());
        blocking(move || host.create(&id, size, fs)).await??;
        Ok(())
    }

    async fn restore_volume(&self, id: &str, snapshot: &str, size: u64) -> Result<()> {
        let (host, store) = (self.volumes.clone(), Arc::clone(&self.snapshots));
        let (id, snapshot) = (id.to_string(), snapshot.to_string());
        blocking(move || host.restore(&id, &store, &snapshot, size)).await??;
        Ok(())
    }

    async fn fork_volume(&self, source: &str, id: &str, size: u64) -> Result<()> {
        let host = self.volumes.clone();
        let (source, id) = (source.to_string(), id.to_string());
        blocking(move || host.fork(&source, &id, size)).await??;
        Ok(())
    }

    async fn grow_volume(&self, id: &str, size: u64) -> Result<bool> {
        let (host, id) = (self.volumes.clone(), id.to_string());
        Ok(blocking(move || host.grow(&id, size)).await??)
    }

    async fn snapshot_volume(&self, id: &str, snapshot: &str) -> Result<SnapshotInfo> {
        let (host, store) = (self.volumes.clone(), Arc::clone(&self.snapshots));
        let (id, snapshot) = (id.to_string(), snapshot.to_string());
        Ok(blocking(move || host.snapshot(&id, &store, &snapshot)).await??)
    }

    async fn discard_snapshot(&self, id: &str, snapshot: &str) -> Result<()> {
        let (host, store) = (self.volumes.clone(), Arc::clone(&self.snapshots));
        let (id, snapshot) = (id.to_string(), snapshot.to_string());
        blocking(move || {
            host.thaw(&id)?;
            store.delete(&snapshot)
        })
        .await??;
        Ok(())
    }

    async fn delete_snapshot(&self, snapshot: &str) -> Result<()> {
        Ok(self.snapshots.delete(snapshot)?)
    }

    async fn collect_snapshot_garbage(&self) -> Result<()> {
        let store = Arc::clone(&self.snapshots);
        blocking(move || store.collect_garbage()).await??;
        Ok(())
    }

    async fn remove_volume(&self, id: &str) -> Result<()> {
        let (host, id) = (self.volumes.clone(), id.to_string());
        blocking(move || host.remove(&id)).await??;
        Ok(())
    }

    async fn attach_volume(&self, id: &str, machine: &str) -> Result<()> {
        let host = self.volumes.clone();
        let (id, machine) = (id.to_string(), machine.to_string());
        blocking(move || host.attach(&id, &machine)).await??;
        Ok(())
    }

    async fn detach_volume(&self, id: &str) -> Result<()> {
        let (host, id) = (self.volumes.clone(), id.to_string());
        blocking(move || host.detach(&id)).await??;
        Ok(())
    }

    fn thaw_volume(&self, id: &str) -> Result<()> {
        Ok(self.volumes.thaw(id)?)
    }

    async fn release_stray_volume_loops(&self, live: &HashSet<String>) -> Result<()> {
        let (host, live) = (self.volumes.clone(), live.clone());
        blocking(move || host.release_stray_loops(|id| live.contains(id))).await??;
        Ok(())
    }
}

/// Runs blocking host work (host tools, file copies, guest files) off the
/// async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| HostError::Internal(format!("host task failed: {e}")))
}

/// The machine's cgroup, relative to the cgroup root: its bundle's
/// `cgroupsPath`, and what is killed to stop every process it forked.
fn cgroup_name(id: &str) -> String {
    format!("roost/{id}")
}

fn read_lower_file(paths: &MachinePaths) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(&paths.lower).map_err(|e| {
        HostError::Internal(format!(
            "machine's layer list {} is unreadable: {e}",
            paths.lower.display()
        ))
    })?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(Into::into)
        .collect())
}

/// Empties `dir` (creating it if missing) without removing it, so the
/// overlay's upper/work dirs keep their identity.
fn reset_dir_contents(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)
}

/// Replaces a machine state file (readable by all, like the files the
/// runtime reads) so that a crash leaves the old or the new contents.
fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    roost_atomic_file::write(path, content, 0o644)
}
