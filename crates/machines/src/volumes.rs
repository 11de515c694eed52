//! Volumes: Fly's volumes API over roost-volume, with durable operations,
//! attachment to machines and scheduled snapshots.
//!
//! Invariants:
//! - A volume is attached to the one non-destroyed machine whose config
//!   mounts it; that is computed from the machine records, never stored
//!   twice. Claims are serialized by one lock, so two machines cannot
//!   both pass the "not attached elsewhere" check.
//! - A volume is mounted on the host only while its machine runs (the
//!   `attach_volumes` and `detach_volumes` steps of machine operations).
//! - Every change to a volume (create, restore, fork, extend, snapshot,
//!   destroy) is a [`VolumePlan`] of the lifecycle model run on the durable
//!   engine, like machines' operations, and resumed by
//!   [`crate::Machines::open`] after a crash; each step is idempotent
//!   (images are built under a temporary name, growth and snapshots can
//!   simply run again).
//! - Lock order: claims, then a machine, then a volume.

use crate::apps::OfApp;
use crate::error::{MachineError, Missing, Result};
use crate::{now_rfc3339, Inner, Service};
use roost_engine::{Logged, OpId, OperationLog, Subject};
use roost_host::{FsType, HostAgent, SnapshotInfo};
use roost_lifecycle::{
    volume, Transition, VolumeIntent, VolumePlan, VolumeSource, VolumeState, VolumeStep,
};
use roost_lifecycle::{MachineRecord, Right, SnapshotRecord, Target, VolumeRecord, VolumeShown};
use roost_store::{OperationWrite, Store, StoreError};
use roost_types::{
    CreateVolumeRequest, ExtendVolumeRequest, ExtendVolumeResponse, MachineConfig, MachineState,
    UpdateVolumeRequest, Volume, VolumeSnapshot,
};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const GIB: u64 = 1 << 30;
/// Fly's largest volume.
const MAX_VOLUME_GB: u64 = 500;
/// Fly's default and maximum snapshot retention, in days.
const DEFAULT_RETENTION_DAYS: u32 = 5;
const MAX_RETENTION_DAYS: u32 = 60;
/// Paths a volume may not be mounted on or under: the machine's own
/// system directories would be hidden or replaced.
const SYSTEM_PATHS: &[&str] = &[
    "/proc", "/sys", "/dev", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/usr", "/boot", "/.roost",
];

/// The service's side of volumes: their limits, schedule and claims (the
/// host agent keeps their images, mounts and snapshots).
pub(crate) struct VolumeLayer {
    /// Largest `size_gb` accepted: Fly's limit or the data filesystem's size.
    max_size_gb: u64,
    fstype: FsType,
    /// Length of a snapshot "day": scheduled snapshots are this far apart
    /// and retention counts in it. 24 hours except in tests.
    day: Duration,
    /// Serializes claims of volumes by machine configs.
    claims: Arc<tokio::sync::Mutex<()>>,
    /// Sent when a volume or its snapshots may have changed: the snapshot
    /// schedule plans its next round again.
    changed: tokio::sync::watch::Sender<()>,
}

impl VolumeLayer {
    pub(crate) fn new(host: &dyn HostAgent, day: Duration) -> VolumeLayer {
        VolumeLayer {
            max_size_gb: host
                .volume_space_gb()
                .unwrap_or(MAX_VOLUME_GB)
                .clamp(1, MAX_VOLUME_GB),
            fstype: host.default_fstype(),
            day,
            claims: Arc::new(tokio::sync::Mutex::new(())),
            changed: tokio::sync::watch::Sender::new(()),
        }
    }
}

/// Whether `record` exists and is not destroyed.
fn is_live(record: &VolumeRecord) -> bool {
    record.state != VolumeState::Destroyed
}

/// What `intent` does to `record`, by the lifecycle model; a refusal is a
/// conflict naming the volume and the states the intent is allowed from.
fn decide(record: &VolumeRecord, intent: VolumeIntent) -> Result<Transition<VolumePlan>> {
    volume::transition(record.state, intent)
        .map_err(|refusal| MachineError::Conflict(format!("volume {} {refusal}", record.id)))
}

/// The plan `intent` runs on `record`, remembering the record as it was.
fn plan_for(record: &VolumeRecord, intent: VolumeIntent) -> Result<VolumePlan> {
    match decide(record, intent)? {
        Transition::Run(plan) => Ok(plan.on(record)),
        _ => Err(MachineError::Internal(format!(
            "volume {}: the lifecycle model plans no {intent:?} operation",
            record.id
        ))),
    }
}

/// `prefix` + 16 lowercase letters and digits, like Fly's volume ids.
fn new_id(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    let tail: String = (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{tail}")
}

fn has_id_shape(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|tail| {
        tail.len() == 16
            && tail
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

fn check_volume_name(name: Option<&str>) -> Result<String> {
    let name = name.unwrap_or_default();
    let valid = !name.is_empty()
        && name.len() <= 30
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(name.to_string())
    } else {
        Err(MachineError::Invalid(format!(
            "name {name:?} is invalid: volume names are 1-30 lowercase letters, digits and '_' (e.g. \"data\")"
        )))
    }
}

fn check_retention(days: u32) -> Result<u32> {
    if (1..=MAX_RETENTION_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(MachineError::Invalid(format!(
            "snapshot_retention = {days} is invalid: allowed values are 1 to {MAX_RETENTION_DAYS} days"
        )))
    }
}

/// Checks a mount path: absolute, plain, and clear of system directories.
pub(crate) fn check_mount_path(path: &str) -> std::result::Result<(), String> {
    let plain = Path::new(path).components().all(|c| {
        matches!(
            c,
            std::path::Component::RootDir | std::path::Component::Normal(_)
        )
    });
    if !path.starts_with('/') || !plain || path.contains('\0') {
        return Err(format!(
            "{path:?} must be an absolute path without '.' or '..' (e.g. \"/data\")"
        ));
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(
            "a volume cannot be mounted at \"/\"; use a directory such as \"/data\"".into(),
        );
    }
    match SYSTEM_PATHS
        .iter()
        .find(|sys| trimmed == **sys || trimmed.starts_with(&format!("{sys}/")))
    {
        Some(sys) => Err(format!(
            "{path:?} overlaps the system directory {sys}; mount volumes elsewhere, e.g. \"/data\""
        )),
        None => Ok(()),
    }
}

fn overlaps(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
}

impl OfApp for VolumeRecord {
    const KIND: &'static str = "volume";
    const ID_SHAPE: &'static str = "\"vol_\" and 16 lowercase letters or digits";

    fn has_id_shape(id: &str) -> bool {
        has_id_shape(id, "vol_")
    }

    fn get(store: &Store, id: &str) -> std::result::Result<Option<Self>, StoreError> {
        store.get_volume(id)
    }

    fn app(&self) -> &str {
        &self.app
    }
}

/// One volume operation as the engine drives it: the volume's record, and
/// what its steps found.
struct VolumeOp<'a> {
    inner: &'a Arc<Inner>,
    record: VolumeRecord,
    /// The volume is new: the operation's start inserts it.
    new: bool,
    /// The filesystem has its final size (an online growth may need the
    /// machine to restart to see all of it).
    complete: bool,
}

impl<'a> VolumeOp<'a> {
    fn new(inner: &'a Arc<Inner>, record: VolumeRecord, new: bool) -> VolumeOp<'a> {
        VolumeOp {
            inner,
            record,
            new,
            complete: true,
        }
    }

    /// Records the snapshot [`VolumeStep::TakeSnapshot`] took.
    fn record_snapshot(&self, plan: &VolumePlan, info: SnapshotInfo) -> Result<()> {
        let now = chrono::Utc::now();
        self.inner.store.put_snapshot(&SnapshotRecord {
            id: plan.source.clone().unwrap_or_default(),
            app: self.record.app.clone(),
            volume_id: self.record.id.clone(),
            created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            created_ms: now.timestamp_millis(),
            digest: info.digest,
            stored_bytes: info.stored_bytes,
            volume_size: info.volume_size,
            status: "created".into(),
            kind: if plan.scheduled {
                "scheduled"
            } else {
                "on-demand"
            }
            .into(),
        })?;
        Ok(())
    }
}

impl Subject for VolumeOp<'_> {
    type Plan = VolumePlan;
    type Error = MachineError;

    fn id(&self) -> &str {
        &self.record.id
    }

    fn begin(&mut self, plan: &VolumePlan) {
        self.record.state = plan.state_during();
    }

    async fn run(&mut self, plan: &VolumePlan, step: VolumeStep) -> Result<()> {
        let host = &self.inner.host;
        let id = self.record.id.as_str();
        let size = plan.size;
        let source = plan.source.as_deref().unwrap_or_default();
        match step {
            VolumeStep::AllocateImage => {
                let fs = plan
                    .fstype
                    .as_deref()
                    .and_then(FsType::parse)
                    .unwrap_or(self.inner.volumes.fstype);
                host.create_volume(id, size, fs).await?;
            }
            VolumeStep::RestoreSnapshot => host.restore_volume(id, source, size).await?,
            VolumeStep::CopyVolume => {
                let lock = self.inner.lock_for(source);
                let _guard = lock.lock().await;
                host.fork_volume(source, id, size).await?;
            }
            VolumeStep::GrowFilesystem => self.complete = host.grow_volume(id, size).await?,
            VolumeStep::TakeSnapshot => {
                let info = host.snapshot_volume(id, source).await?;
                self.record_snapshot(plan, info)?;
            }
            VolumeStep::RemoveImage => host.remove_volume(id).await?,
            VolumeStep::DiscardSnapshot => host.discard_snapshot(id, source).await?,
        }
        Ok(())
    }

    fn settle(&mut self, plan: &VolumePlan) {
        self.record.state = plan.settle();
    }

    fn fail(&mut self, plan: &VolumePlan, _step: VolumeStep, _error: &MachineError) {
        match (plan.failed_state(), &plan.previous) {
            (Some(state), _) => self.record.state = state,
            (None, Some(previous)) => self.record = previous.clone(),
            (None, None) => {}
        }
    }
}

impl OperationLog<VolumeOp<'_>> for Store {
    type Error = StoreError;

    fn begin(&self, op: &VolumeOp<'_>, plan: &VolumePlan) -> Result<OpId, StoreError> {
        let write = if op.new {
            OperationWrite::NewVolume(&op.record)
        } else {
            OperationWrite::Volume(&op.record)
        };
        crate::ops::log_start(self, write, plan)
    }

    fn advance(&self, op: OpId, next_step: usize) -> Result<(), StoreError> {
        crate::ops::log_step(self, op, next_step)
    }

    fn finish(&self, op_id: OpId, op: &VolumeOp<'_>) -> Result<(), StoreError> {
        self.finish_operation(op_id, OperationWrite::Volume(&op.record))
    }
}

impl Inner {
    /// The volume `id` of `app`.
    fn volume_record(&self, app: &str, id: &str) -> Result<VolumeRecord> {
        self.of_app(app, id)
    }

    /// The non-destroyed machine whose config mounts `volume`, if any.
    fn volume_holder(&self, app: &str, volume: &str) -> Result<Option<MachineRecord>> {
        Ok(self.store.list_machines(Some(app))?.into_iter().find(|m| {
            m.state != MachineState::Destroyed
                && m.config.mounts.iter().any(|mount| mount.volume == volume)
        }))
    }

    /// The wire view: the record plus live capacity and attachment.
    fn volume_view(&self, record: &VolumeRecord) -> Result<Volume> {
        let mut shown = VolumeShown::default();
        if is_live(record) {
            shown.attached_machine_id = self.volume_holder(&record.app, &record.id)?.map(|m| m.id);
        }
        if self.host.volume_exists(&record.id) {
            if let Ok(usage) = self.host.volume_usage(&record.id) {
                shown.block_size = usage.block_size;
                shown.blocks = usage.blocks;
                shown.blocks_free = usage.blocks_free;
                shown.blocks_avail = usage.blocks_avail;
            }
        }
        Ok(record.clone().into_view(shown))
    }

    /// Validates the mounts of a machine config (`machine` is the machine
    /// being updated, `None` for a new one) and returns the claim lock,
    /// which the caller holds until the config is stored so no other
    /// machine can claim the same volume meanwhile. `None` without mounts.
    pub(crate) async fn claim_mounts(
        &self,
        app: &str,
        machine: Option<&str>,
        config: &MachineConfig,
    ) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>> {
        if config.mounts.is_empty() {
            return Ok(None);
        }
        let guard = Arc::clone(&self.volumes.claims).lock_owned().await;
        for (i, mount) in config.mounts.iter().enumerate() {
            check_mount_path(&mount.path)
                .map_err(|why| MachineError::Invalid(format!("config.mounts[{i}].path: {why}")))?;
            if let Some(other) = config.mounts[..i]
                .iter()
                .find(|m| m.volume == mount.volume || overlaps(&m.path, &mount.path))
            {
                return Err(MachineError::Invalid(format!(
                    "config.mounts[{i}] ({} at {}) clashes with {} at {}: each volume once, at paths that do not contain each other",
                    mount.volume, mount.path, other.volume, other.path
                )));
            }
            let record = self
                .volume_record(app, &mount.volume)
                .map_err(|e| MachineError::Invalid(format!("config.mounts[{i}].volume: {e}")))?;
            decide(&record, VolumeIntent::Mount)
                .map_err(|e| MachineError::Invalid(format!("config.mounts[{i}].volume: {e}")))?;
            if let Some(holder) = self.volume_holder(app, &mount.volume)? {
                if Some(holder.id.as_str()) != machine {
                    return Err(MachineError::Conflict(format!(
                        "volume {} is attached to machine {}: a volume serves one machine at a time; destroy that machine or remove its mount first",
                        mount.volume, holder.id
                    )));
                }
            }
        }
        Ok(Some(guard))
    }

    /// Mounts the volumes of `record`'s config on the host (step `attach_volumes`).
    pub(crate) async fn attach_volumes(&self, record: &MachineRecord) -> Result<()> {
        for mount in &record.config.mounts {
            self.attach_volume(&mount.volume, &record.id).await?;
        }
        Ok(())
    }

    /// Mounts volume `volume` on the host for `machine` (a no-op when it is
    /// mounted for it already).
    pub(crate) async fn attach_volume(&self, volume: &str, machine: &str) -> Result<()> {
        let lock = self.lock_for(volume);
        let _guard = lock.lock().await;
        Ok(self.host.attach_volume(volume, machine).await?)
    }

    /// Unmounts volume `volume` from the host.
    pub(crate) async fn detach_volume(&self, volume: &str) -> Result<()> {
        let lock = self.lock_for(volume);
        let _guard = lock.lock().await;
        Ok(self.host.detach_volume(volume).await?)
    }

    /// Unmounts every volume mounted for `machine` (step `detach_volumes`).
    /// Goes by what is mounted, not by the config, which an update may
    /// already have replaced.
    pub(crate) async fn detach_volumes(&self, machine: &str) -> Result<()> {
        for id in self.host.volumes()? {
            if self.host.volume_holder(&id).as_deref() != Some(machine) {
                continue;
            }
            self.detach_volume(&id).await?;
        }
        Ok(())
    }

    /// Records `plan` for `record` (inserting it when `new`) and runs it.
    /// Returns the settled record and whether the filesystem already has
    /// its final size. The caller holds the volume's lock.
    async fn run_new_volume_op(
        self: &Arc<Self>,
        record: VolumeRecord,
        plan: VolumePlan,
        new: bool,
    ) -> Result<(VolumeRecord, bool)> {
        let mut op = VolumeOp::new(self, record, new);
        let ran = self.engine.start(&self.store, &mut op, &plan).await;
        self.volumes.changed.send_replace(());
        ran?;
        Ok((op.record, op.complete))
    }

    /// Resumes a volume operation a previous process left unfinished. The
    /// caller holds the volume's lock.
    pub(crate) async fn resume_volume_op(
        self: &Arc<Self>,
        record: VolumeRecord,
        plan: VolumePlan,
        logged: Logged,
    ) -> Result<()> {
        let mut op = VolumeOp::new(self, record, false);
        self.engine.run(&self.store, &mut op, &plan, logged).await
    }

    /// Before operations are resumed: thaws volumes a killed process left
    /// frozen mid-snapshot.
    pub(crate) fn thaw_volumes(&self) -> Result<()> {
        for id in self.host.volumes()? {
            if let Err(err) = self.host.thaw_volume(&id) {
                tracing::error!(volume = %id, error = %err, "cannot thaw volume");
            }
        }
        Ok(())
    }

    /// After machines are recovered: a volume is mounted only for a
    /// started machine, and loop devices and directories of volumes that
    /// no longer exist are released.
    pub(crate) async fn converge_volume_mounts(&self) -> Result<()> {
        let volumes = self.store.list_volumes(None)?;
        let live = |id: &str| volumes.iter().any(|v| v.id == id && is_live(v));
        for id in self.host.volumes()? {
            let holder_runs = match self.host.volume_holder(&id) {
                Some(machine) => self
                    .store
                    .get_machine(&machine)?
                    .is_some_and(|m| m.state == MachineState::Started),
                None => false,
            };
            let host = &self.host;
            if !live(&id) {
                tracing::warn!(volume = %id, "removing files of a volume that no longer exists");
                host.remove_volume(&id).await?;
            } else if !holder_runs
                && (host.volume_mounted(&id) || host.volume_holder(&id).is_some())
            {
                tracing::warn!(volume = %id, "detaching a volume whose machine is not running");
                host.detach_volume(&id).await?;
            }
        }
        let keep: HashSet<String> = volumes
            .iter()
            .filter(|v| is_live(v))
            .map(|v| v.id.clone())
            .collect();
        Ok(self.host.release_stray_volume_loops(&keep).await?)
    }

    /// Takes a snapshot of `record` (the caller holds the volume's lock).
    async fn snapshot_volume(
        self: &Arc<Self>,
        record: VolumeRecord,
        scheduled: bool,
    ) -> Result<VolumeSnapshot> {
        let snapshot_id = new_id("vs_");
        let mut plan = plan_for(&record, VolumeIntent::Snapshot)?;
        plan.source = Some(snapshot_id.clone());
        plan.scheduled = scheduled;
        self.run_new_volume_op(record, plan, false).await?;
        self.store
            .get_snapshot(&snapshot_id)?
            .map(SnapshotRecord::into_view)
            .ok_or_else(|| {
                MachineError::Internal(format!("snapshot {snapshot_id} was not recorded"))
            })
    }

    /// One round of the daily schedule: snapshots volumes whose last
    /// snapshot (or creation) is a day old, then drops snapshots past
    /// their volume's retention and the chunks no snapshot uses. Returns
    /// how long until the next of these falls due, `None` when nothing
    /// will (no volume to snapshot, no snapshot to expire).
    pub(crate) async fn scheduled_snapshots(self: &Arc<Self>) -> Result<Option<Duration>> {
        let day_ms = self.volumes.day.as_millis() as i64;
        let now = chrono::Utc::now().timestamp_millis();
        let mut next: Option<i64> = None;
        let mut due_at = |at: i64| next = Some(next.map_or(at, |n| n.min(at)));
        let volumes = self.store.list_volumes(None)?;
        for volume in &volumes {
            if volume.state != VolumeState::Created || !volume.auto_backup_enabled {
                continue;
            }
            let created = chrono::DateTime::parse_from_rfc3339(&volume.created_at)
                .map(|t| t.timestamp_millis())
                .unwrap_or(now);
            let last = self
                .store
                .list_snapshots(Some(&volume.id))?
                .iter()
                .map(|s| s.created_ms)
                .max()
                .unwrap_or(created);
            if now - last < day_ms {
                due_at(last + day_ms);
                continue;
            }
            let lock = self.lock_for(&volume.id);
            let _guard = lock.lock().await;
            let Some(current) = self.store.get_volume(&volume.id)? else {
                continue;
            };
            if current.state == VolumeState::Created {
                self.snapshot_volume(current, true).await?;
                due_at(now + day_ms);
            }
        }
        let mut dropped = false;
        for snapshot in self.store.list_snapshots(None)? {
            let retention = volumes
                .iter()
                .find(|v| v.id == snapshot.volume_id)
                .map(|v| v.snapshot_retention)
                .unwrap_or(DEFAULT_RETENTION_DAYS);
            let kept_ms = i64::from(retention) * day_ms;
            if now - snapshot.created_ms > kept_ms {
                tracing::info!(snapshot = %snapshot.id, volume = %snapshot.volume_id, "snapshot past its retention; deleting it");
                self.host.delete_snapshot(&snapshot.id).await?;
                self.store.delete_snapshot(&snapshot.id)?;
                dropped = true;
            } else {
                due_at(snapshot.created_ms + kept_ms + 1);
            }
        }
        if dropped {
            self.host.collect_snapshot_garbage().await?;
        }
        Ok(next.map(|at| Duration::from_millis((at - now).max(0) as u64)))
    }
}

/// Runs the daily snapshot schedule for as long as the service lives. A
/// round runs when the last one said something falls due (a snapshot,
/// an expiry) and when a volume or snapshot changes, which may bring
/// that closer; with no volume to snapshot and no snapshot to expire
/// there is no timer at all. Rounds are at least a tick (an eighth of a
/// "day", 0.2 to 600 s) apart, the first a tick after the start, so a
/// burst of changes costs one round and a failed one is retried a tick
/// later.
pub(crate) async fn snapshot_periodically(inner: std::sync::Weak<Inner>, day: Duration) {
    let tick = (day / 8).clamp(Duration::from_millis(200), Duration::from_secs(600));
    let Some(mut changed) = inner.upgrade().map(|i| i.volumes.changed.subscribe()) else {
        return;
    };
    let mut last_round = tokio::time::Instant::now();
    let mut due = Some(last_round);
    loop {
        tokio::time::sleep_until(last_round + tick).await;
        let falls_due = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // An error is the service gone with its volumes.
            gone = changed.changed() => if gone.is_err() { return },
            () = falls_due => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        last_round = tokio::time::Instant::now();
        due = match inner.scheduled_snapshots().await {
            Ok(next) => next.map(|wait| last_round + wait),
            Err(err) => {
                tracing::warn!(error = %err, "scheduled volume snapshots failed");
                Some(last_round + tick)
            }
        };
    }
}

impl Service {
    /// Creates a volume: empty, restored from `snapshot_id`, or forked
    /// from `source_volume_id`.
    pub async fn create_volume(&self, app: &str, req: CreateVolumeRequest) -> Result<Volume> {
        let inner = self.authorize(Right::Volumes, Target::App(app))?;
        inner.app(app)?;
        let name = check_volume_name(req.name.as_deref())?;
        let retention = check_retention(req.snapshot_retention.unwrap_or(DEFAULT_RETENTION_DAYS))?;
        let fstype = match req.fstype.as_deref() {
            None | Some("") => inner.volumes.fstype,
            Some(name) => FsType::parse(name).ok_or_else(|| {
                MachineError::Invalid(format!(
                    "fstype {name:?} is not supported: use \"ext4\" or \"xfs\""
                ))
            })?,
        };
        let (source, min_bytes, fstype) = match (&req.snapshot_id, &req.source_volume_id) {
            (Some(_), Some(_)) => {
                return Err(MachineError::Invalid(
                    "give snapshot_id (restore) or source_volume_id (fork), not both".into(),
                ))
            }
            (Some(snapshot), None) => {
                let found = inner
                    .store
                    .get_snapshot(snapshot)?
                    .filter(|s| s.app == app)
                    .ok_or_else(|| {
                        MachineError::Missing(Missing::Snapshot {
                            app: app.to_string(),
                            snapshot: snapshot.clone(),
                        })
                    })?;
                let origin = inner.store.get_volume(&found.volume_id)?;
                let fs = origin
                    .and_then(|v| FsType::parse(&v.fstype))
                    .unwrap_or(fstype);
                let source = VolumeSource::Snapshot {
                    id: snapshot.clone(),
                    fstype: fs.name().into(),
                };
                (source, found.volume_size, fs)
            }
            (None, Some(source)) => {
                let record = inner
                    .volume_record(app, source)
                    .map_err(|e| MachineError::Invalid(format!("source_volume_id: {e}")))?;
                decide(&record, VolumeIntent::Fork)
                    .map_err(|e| MachineError::Invalid(format!("source_volume_id: {e}")))?;
                let fs = FsType::parse(&record.fstype).unwrap_or(fstype);
                let source = VolumeSource::Volume {
                    id: source.clone(),
                    fstype: fs.name().into(),
                };
                (source, record.size_gb * GIB, fs)
            }
            (None, None) => {
                let source = VolumeSource::Empty {
                    fstype: fstype.name().into(),
                };
                (source, fstype.min_size(), fstype)
            }
        };
        let min_gb = min_bytes.div_ceil(GIB).max(1);
        let size_gb = req.size_gb.unwrap_or(min_gb);
        let max = inner.volumes.max_size_gb;
        if size_gb == 0 || size_gb > max {
            return Err(MachineError::Invalid(format!(
                "size_gb = {size_gb} is invalid: allowed values are 1 to {max} (this host's limit)"
            )));
        }
        if size_gb < min_gb {
            return Err(MachineError::Invalid(format!(
                "size_gb = {size_gb} is too small: the new volume must be at least as large as its source ({min_gb} GB)"
            )));
        }
        let id = new_id("vol_");
        let record = VolumeRecord {
            id: id.clone(),
            app: app.to_string(),
            name,
            state: VolumeState::Creating,
            size_gb,
            region: inner.region.clone(),
            zone: inner.region.clone(),
            encrypted: false,
            created_at: now_rfc3339(),
            fstype: fstype.name().into(),
            snapshot_retention: retention,
            auto_backup_enabled: req.auto_backup_enabled.unwrap_or(true),
            host_dedication_key: String::new(),
        };
        let plan = VolumePlan::build(source, size_gb * GIB);
        let lock = inner.lock_for(&id);
        let _guard = lock.lock().await;
        let (record, _) = inner.run_new_volume_op(record, plan, true).await?;
        inner.volume_view(&record)
    }

    /// Volumes of an app (destroyed ones are not listed).
    pub fn list_volumes(&self, app: &str) -> Result<Vec<Volume>> {
        self.authorize(Right::Read, Target::App(app))?
            .live_volumes(app)
    }

    pub fn get_volume(&self, app: &str, id: &str) -> Result<Volume> {
        let inner = self.authorize(Right::Read, Target::App(app))?;
        let record = inner.volume_record(app, id)?;
        inner.volume_view(&record)
    }

    /// Changes a volume's snapshot settings.
    pub async fn update_volume(
        &self,
        app: &str,
        id: &str,
        req: UpdateVolumeRequest,
    ) -> Result<Volume> {
        let inner = self.authorize(Right::Volumes, Target::App(app))?;
        let retention = req.snapshot_retention.map(check_retention).transpose()?;
        inner.volume_record(app, id)?;
        let lock = inner.lock_for(id);
        let _guard = lock.lock().await;
        let mut record = inner.volume_record(app, id)?;
        decide(&record, VolumeIntent::Edit)?;
        if let Some(days) = retention {
            record.snapshot_retention = days;
        }
        if let Some(enabled) = req.auto_backup_enabled {
            record.auto_backup_enabled = enabled;
        }
        inner.store.update_volume(&record)?;
        inner.volumes.changed.send_replace(());
        inner.volume_view(&record)
    }

    /// Grows a volume, online while its machine runs.
    pub async fn extend_volume(
        &self,
        app: &str,
        id: &str,
        req: ExtendVolumeRequest,
    ) -> Result<ExtendVolumeResponse> {
        let inner = self.authorize(Right::Volumes, Target::App(app))?;
        inner.volume_record(app, id)?;
        let lock = inner.lock_for(id);
        let _guard = lock.lock().await;
        let record = inner.volume_record(app, id)?;
        let current = record.size_gb;
        let max = inner.volumes.max_size_gb;
        if req.size_gb <= current || req.size_gb > max {
            return Err(MachineError::Invalid(format!(
                "size_gb = {} is invalid: volumes only grow; allowed values are {} to {max} (now {current})",
                req.size_gb,
                current + 1
            )));
        }
        let mut plan = plan_for(&record, VolumeIntent::Extend)?;
        plan.size = req.size_gb * GIB;
        let mut grown = record;
        grown.size_gb = req.size_gb;
        let (record, complete) = inner.run_new_volume_op(grown, plan, false).await?;
        let needs_restart = !complete && inner.host.volume_mounted(id);
        Ok(ExtendVolumeResponse {
            volume: inner.volume_view(&record)?,
            needs_restart,
        })
    }

    /// Destroys a volume; refused while a machine mounts it. Its snapshots
    /// are kept until their retention ends.
    pub async fn destroy_volume(&self, app: &str, id: &str) -> Result<Volume> {
        self.authorize(Right::Volumes, Target::App(app))?
            .destroy_volume(app, id)
            .await
    }

    /// Snapshots of a volume, oldest first.
    pub fn list_volume_snapshots(&self, app: &str, id: &str) -> Result<Vec<VolumeSnapshot>> {
        let inner = self.authorize(Right::Read, Target::App(app))?;
        inner.volume_record(app, id)?;
        Ok(inner
            .store
            .list_snapshots(Some(id))?
            .into_iter()
            .map(SnapshotRecord::into_view)
            .collect())
    }

    /// Takes a snapshot now; crash-consistent while a machine writes.
    pub async fn create_volume_snapshot(&self, app: &str, id: &str) -> Result<VolumeSnapshot> {
        let inner = self.authorize(Right::Volumes, Target::App(app))?;
        inner.volume_record(app, id)?;
        let lock = inner.lock_for(id);
        let _guard = lock.lock().await;
        let record = inner.volume_record(app, id)?;
        inner.snapshot_volume(record, false).await
    }
}

impl Inner {
    /// Volumes of an app that are not destroyed.
    fn live_volumes(&self, app: &str) -> Result<Vec<Volume>> {
        self.app(app)?;
        self.store
            .list_volumes(Some(app))?
            .iter()
            .filter(|r| is_live(r))
            .map(|r| self.volume_view(r))
            .collect()
    }

    /// Destroys every volume of `app`: deleting an app deletes its volumes,
    /// as on Fly. Its machines must be destroyed first.
    pub(crate) async fn destroy_app_volumes(self: &Arc<Self>, app: &str) -> Result<()> {
        for volume in self.live_volumes(app)? {
            self.destroy_volume(app, &volume.id).await?;
        }
        Ok(())
    }

    async fn destroy_volume(self: &Arc<Self>, app: &str, id: &str) -> Result<Volume> {
        self.volume_record(app, id)?;
        let _claims = Arc::clone(&self.volumes.claims).lock_owned().await;
        if let Some(holder) = self.volume_holder(app, id)? {
            return Err(MachineError::Conflict(format!(
                "volume {id} is attached to machine {}: destroy that machine (or update it without the mount) first",
                holder.id
            )));
        }
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let record = self.volume_record(app, id)?;
        let plan = plan_for(&record, VolumeIntent::Destroy)?;
        let (record, _) = self.run_new_volume_op(record, plan, false).await?;
        self.volume_view(&record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_stay_clear_of_the_system() {
        assert!(check_mount_path("/data").is_ok());
        assert!(check_mount_path("/var/lib/db/").is_ok());
        for bad in [
            "data",
            "/",
            "//",
            "/data/../etc",
            "/proc",
            "/etc/x",
            "/usr",
            "/.roost",
        ] {
            assert!(check_mount_path(bad).is_err(), "{bad}");
        }
        assert!(overlaps("/data", "/data/sub"));
        assert!(!overlaps("/data", "/database"));
    }

    #[test]
    fn ids_and_names_look_like_flys() {
        let id = new_id("vol_");
        assert!(has_id_shape(&id, "vol_"), "{id}");
        assert!(!has_id_shape("vol_../../etc", "vol_"));
        assert!(check_volume_name(Some("my_data")).is_ok());
        assert!(check_volume_name(None).is_err());
        assert!(check_volume_name(Some("My-Data")).is_err());
        assert!(check_retention(0).is_err());
        assert!(check_retention(5).is_ok());
    }
}
