//! The orchestrator: every platform operation on apps and machines.
//!
//! This is roost's one service layer. The HTTP API, the CLI (through the
//! API), the MCP server and the proxy's autostart all call it; none of
//! them holds lifecycle logic of its own. Each reaches the operations as
//! a [`Service`]: [`Machines`] bound to the [`Caller`] it acts for, whose
//! rights [`Service`]'s one check decides before every operation.
//!
//! It is a facade: each family of operations is a module of its own, an
//! `impl Service` block with the helpers only it needs (`apps`, `machines`,
//! `leases`, `wait`, `exec`, `files`, `volumes`, `storage`, `secrets`,
//! `egress`, `checks`, `images`), over the lifecycle model, the durable
//! engine ([`ops`] for machines) and the host agent.
//!
//! Invariants:
//! - Operations on one machine are serialized by a per-machine lock, so a
//!   machine is only ever in one operation.
//! - Every lifecycle change of a machine or a volume is a durable
//!   operation on `roost-engine` ([`ops`], [`volumes`]): recorded in the
//!   store before it acts, resumed by [`Machines::open`] after a crash.
//! - A machine not in `started` has no process and no mounted rootfs
//!   overlay (its rootfs disk stays mounted, as its network namespace
//!   stays).
//! - Nothing here touches the host but through the host agent
//!   ([`roost_host::HostAgent`]): the service decides, the agent acts.
//! - Input is validated before any state changes: a refused request leaves
//!   nothing behind.

mod apps;
mod checks;
mod egress;
mod error;
mod exec;
mod files;
mod ids;
mod images;
mod leases;
mod machines;
mod network;
mod ops;
mod recovery;
mod secrets;
mod service;
mod spec;
mod storage;
mod vault;
mod volumes;
mod wait;

pub use error::{MachineError, Missing, Result};
pub use files::{
    DirListing, FileContent, MAX_DIR_ENTRIES, MAX_LOG_LINES, MAX_READ_BYTES, MAX_WRITE_BYTES,
};
pub use ids::is_machine_id;
pub use machines::{ListFilter, StartResponse, LISTED_EVENTS};
pub use roost_engine::CRASH_AT_ENV;
pub use roost_host::{DirEntry, EntryKind, LogFiles, LogRelay, OciRuntimeKind};
pub use roost_image::{Image, ImageStore, RegistryConfig};
pub use roost_lifecycle::{Caller, Forbidden, MachineRecord, Right, Rights, Scope, Target, Who};
pub use service::Service;
pub use spec::{HostLimits, DEFAULT_ROOTFS_GB};
pub use storage::{StorageConfig, StorageInfo};

use roost_host::{HostAgent, LocalHost, LocalHostConfig, MachineBundle, VolumeMount};
use roost_store::Store;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How long a stop waits for the main process after the stop signal before
/// killing it, when neither the request nor `stop_config` says.
pub const DEFAULT_STOP_TIMEOUT_MS: u64 = 5_000;
/// Size at which a machine's log is rotated (one rotated file is kept), so
/// a machine's logs take at most twice this on disk.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Host configuration of the orchestrator.
#[derive(Debug, Clone)]
pub struct MachinesConfig {
    pub data_dir: PathBuf,
    /// Runtime for machines whose config does not name one.
    pub default_runtime: OciRuntimeKind,
    /// Region every machine reports (single host).
    pub region: String,
    /// `ROOST_CRASH_AT` value; see [`CRASH_AT_ENV`].
    pub crash_at: Option<String>,
    /// The program that writes machines' output into their logs, and the
    /// logs' bound: a process of its own, so logging goes on while the
    /// service restarts.
    pub log_relay: LogRelay,
    /// Registries images may be pulled from: insecure hosts, extra CA, credentials.
    pub registries: RegistryConfig,
    /// Interval of scheduled volume snapshots, and the unit of their
    /// retention ("days"). 24 hours; tests shorten it.
    pub volume_snapshot_day: std::time::Duration,
    /// How machines reach the S3 endpoint (their `AWS_*` variables).
    pub storage: StorageConfig,
    /// The machines' private network; `None` leaves each machine alone in
    /// a namespace with only loopback.
    pub network: Option<roost_host::NetConfig>,
    /// The egress policy default of apps created from now on.
    pub egress_default: roost_types::EgressDefault,
    /// How many of its newest events each machine keeps.
    pub events_per_machine: u32,
}

impl MachinesConfig {
    pub fn new(data_dir: impl Into<PathBuf>, log_relay: LogRelay) -> MachinesConfig {
        MachinesConfig {
            data_dir: data_dir.into(),
            default_runtime: OciRuntimeKind::Crun,
            region: "local".into(),
            crash_at: None,
            log_relay,
            registries: RegistryConfig::default(),
            volume_snapshot_day: std::time::Duration::from_secs(24 * 3600),
            storage: StorageConfig::default(),
            network: None,
            egress_default: roost_types::EgressDefault::Deny,
            events_per_machine: roost_store::DEFAULT_EVENTS_PER_MACHINE,
        }
    }
}

/// The platform service: its state and wiring. Its operations are reached
/// through [`Machines::as_caller`]. Cheap to clone.
#[derive(Clone)]
pub struct Machines {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    store: Store,
    images: ImageStore,
    puller: Arc<roost_image::Puller>,
    /// Where every machine and volume lives: this host.
    host: Arc<dyn HostAgent>,
    default_runtime: OciRuntimeKind,
    data_dir: PathBuf,
    region: String,
    limits: HostLimits,
    /// Runs every machine and volume operation.
    engine: roost_engine::Engine,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Bumped on every machine state change; waiters re-read the store.
    changes: tokio::sync::watch::Sender<u64>,
    volumes: volumes::VolumeLayer,
    storage: storage::StorageLayer,
    /// Health-check results reported by the edge proxy.
    checks: checks::CheckResults,
    egress: egress::EgressLayer,
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Machines {
    /// Opens the data directory, then converges every machine: unfinished
    /// operations are resumed, machines recorded as started but no longer
    /// running are handled as exits, and leftover containers and mounts of
    /// machines that should have none are removed.
    pub async fn open(config: MachinesConfig) -> Result<Machines> {
        // Machines' root filesystems, logs and volumes, images' layers and
        // the keys all live below the data dir: no other local user may
        // reach into it (a setuid file a machine or an image planted
        // would otherwise run as root on the host).
        private_dir(&config.data_dir)?;
        let store = Store::open_keeping_events(
            &config.data_dir.join("roost.db"),
            config.events_per_machine,
        )?;
        storage::seal_plaintext_keys(&store, &config.data_dir)?;
        let images = ImageStore::open(config.data_dir.join("images"))?;
        let puller = roost_image::Puller::new(config.registries)
            .map_err(|e| MachineError::Invalid(format!("registry configuration: {e}")))?;
        let host: Arc<dyn HostAgent> = Arc::new(
            LocalHost::open(LocalHostConfig {
                data_dir: config.data_dir.clone(),
                default_runtime: config.default_runtime,
                log_relay: config.log_relay,
                network: config.network,
            })
            .await?,
        );
        let volume_day = config.volume_snapshot_day;
        let volumes = volumes::VolumeLayer::new(host.as_ref(), volume_day);
        let storage = storage::StorageLayer {
            objects: roost_objects::ObjectStore::open(config.data_dir.join("objects")).map_err(
                |e| MachineError::Internal(format!("cannot open the object store: {e}")),
            )?,
            config: config.storage,
        };
        let inner = Arc::new(Inner {
            store,
            images,
            puller: Arc::new(puller),
            host,
            default_runtime: config.default_runtime,
            data_dir: config.data_dir,
            region: config.region,
            limits: HostLimits::detect(),
            engine: roost_engine::Engine::new(config.crash_at),
            locks: Mutex::new(HashMap::new()),
            changes: tokio::sync::watch::Sender::new(0),
            volumes,
            storage,
            checks: checks::CheckResults::default(),
            egress: egress::EgressLayer::new(config.egress_default),
        });
        inner.recover().await?;
        inner.converge_volume_mounts().await?;
        tokio::spawn(volumes::snapshot_periodically(
            Arc::downgrade(&inner),
            volume_day,
        ));
        Ok(Machines { inner })
    }

    pub fn images(&self) -> &ImageStore {
        &self.inner.images
    }
}

impl Inner {
    pub(crate) fn notify_change(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    pub(crate) fn runtime_kind(&self, name: &str) -> Result<OciRuntimeKind> {
        let kind = name
            .parse::<OciRuntimeKind>()
            .map_err(|e| MachineError::Invalid(e.to_string()))?;
        if self.host.has_runtime(kind) {
            return Ok(kind);
        }
        Err(MachineError::Invalid(format!(
            "runtime '{kind}' is not installed on this host (Debian package: {kind})"
        )))
    }

    /// The runtime the machine's container runs under.
    pub(crate) fn runtime_for(&self, record: &MachineRecord) -> Result<OciRuntimeKind> {
        self.runtime_kind(&record.runtime)
    }

    /// Writes the layer list and the OCI bundle of the machine's current
    /// config: the expensive, image-dependent part of bringing a machine up,
    /// done at create and update so that start only runs it.
    pub(crate) async fn prepare(&self, record: &MachineRecord) -> Result<()> {
        let machine = record;
        let image = self.images.get(&machine.image_ref.digest)?;
        let sizing = spec::validate(&machine.config, self.limits)?;
        let (uid, gid) = match image.config.user.as_deref().filter(|u| !u.is_empty()) {
            Some(user) => self.images.resolve_user(&image, user)?,
            None => (0, 0),
        };
        let bundle = MachineBundle {
            id: machine.id.clone(),
            app: record.app.clone(),
            layers: self.images.layer_paths(&image)?,
            args: spec::command(&machine.config, &image)?,
            env: self.machine_env(record, &image)?,
            cwd: image
                .config
                .working_dir
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "/".into()),
            uid,
            gid,
            memory_mb: sizing.memory_mb,
            cpus: sizing.cpus,
            terminal: machine.config.init.as_ref().is_some_and(|init| init.tty),
            volumes: machine
                .config
                .mounts
                .iter()
                .map(|mount| VolumeMount {
                    volume: mount.volume.clone(),
                    path: mount.path.clone(),
                })
                .collect(),
        };
        Ok(self.host.prepare(&bundle).await?)
    }

    /// The main process's environment: image, then config, then app
    /// secrets, then the platform's variables.
    pub(crate) fn machine_env(&self, record: &MachineRecord, image: &Image) -> Result<Vec<String>> {
        let m = record;
        let secrets = self.secret_env(&record.app)?;
        let mut vars: Vec<(&str, &str)> = secrets
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        vars.extend([
            ("FLY_APP_NAME", record.app.as_str()),
            ("FLY_MACHINE_ID", m.id.as_str()),
            ("FLY_ALLOC_ID", m.id.as_str()),
            ("FLY_REGION", m.region.as_str()),
            ("FLY_IMAGE_REF", m.config.image.as_str()),
            ("FLY_MACHINE_VERSION", m.instance_id.as_str()),
        ]);
        if !m.private_ip.is_empty() {
            vars.push(("FLY_PRIVATE_IP", m.private_ip.as_str()));
        }
        let env = spec::environment(&m.config, image, &vars);
        let mut platform = self.storage_env(&record.app);
        platform.extend(self.egress_env(m));
        Ok(with_platform_env(env, &m.config.env, platform))
    }
}

/// Adds the platform's variables (`NAME`, value) to a machine's `env`
/// (`KEY=value` entries), replacing the image's: the machine's own
/// `config.env` wins over the platform, the platform over the image.
fn with_platform_env(
    mut env: Vec<String>,
    config_env: &std::collections::BTreeMap<String, String>,
    platform: Vec<(String, String)>,
) -> Vec<String> {
    let platform: Vec<(String, String)> = platform
        .into_iter()
        .filter(|(key, _)| !config_env.contains_key(key))
        .collect();
    env.retain(|entry| {
        let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
        !platform.iter().any(|(k, _)| k == key)
    });
    env.extend(platform.into_iter().map(|(k, v)| format!("{k}={v}")));
    env
}

/// Creates `dir` if needed and makes it 0700, also when it existed with a
/// wider mode (a data dir from before roost restricted it).
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}
