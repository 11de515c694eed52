//! Volumes: their states, what may be asked of them, and the plans of
//! their operations.
//!
//! A volume is built by one operation (empty, restored from a snapshot or
//! forked from another volume), rests in `created`, and is changed by
//! operations that each settle it in `created` again, or in `destroyed`.
//! Machines use a volume without an operation of its own: mounting it is a
//! step of the machine's plans.

use crate::operation::{Operation, StepName, Transition};
use crate::refusal::{Refusal, Wording};
use crate::VolumeRecord;
use serde::{Deserialize, Serialize};

/// A volume's state, as Fly names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeState {
    /// An empty filesystem is being made.
    Creating,
    /// It is being filled from a snapshot.
    Restoring,
    /// It is being copied from another volume.
    Hydrating,
    Created,
    /// Its filesystem is growing (a machine may keep using it).
    Extending,
    Destroying,
    Destroyed,
}

use VolumeState as V;

impl VolumeState {
    pub const ALL: [VolumeState; 7] = [
        V::Creating,
        V::Restoring,
        V::Hydrating,
        V::Created,
        V::Extending,
        V::Destroying,
        V::Destroyed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            V::Creating => "creating",
            V::Restoring => "restoring",
            V::Hydrating => "hydrating",
            V::Created => "created",
            V::Extending => "extending",
            V::Destroying => "destroying",
            V::Destroyed => "destroyed",
        }
    }

    /// The state named `name` (the wire and the store keep volume states
    /// as text; these are also their serde names).
    pub fn parse(name: &str) -> Option<VolumeState> {
        VolumeState::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
    }

    /// Whether an operation is under way in this state.
    pub fn is_transitional(self) -> bool {
        !matches!(self, V::Created | V::Destroyed)
    }
}

impl std::fmt::Display for VolumeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One idempotent unit of volume work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeStep {
    /// Make the image with an empty filesystem (under a temporary name, so
    /// a crash leaves no half-made image under the real one).
    AllocateImage,
    /// Make the image from a snapshot's chunks.
    RestoreSnapshot,
    /// Copy another volume's image.
    CopyVolume,
    /// Grow the image and its filesystem (online while mounted).
    GrowFilesystem,
    /// Freeze, store the changed chunks, thaw, and record the snapshot.
    TakeSnapshot,
    /// Remove the image and every host file of the volume.
    RemoveImage,
    /// Thaw the volume and drop a snapshot that was not recorded.
    DiscardSnapshot,
}

impl StepName for VolumeStep {
    fn name(self) -> &'static str {
        match self {
            VolumeStep::AllocateImage => "allocate_image",
            VolumeStep::RestoreSnapshot => "restore_snapshot",
            VolumeStep::CopyVolume => "copy_volume",
            VolumeStep::GrowFilesystem => "grow_filesystem",
            VolumeStep::TakeSnapshot => "take_snapshot",
            VolumeStep::RemoveImage => "remove_image",
            VolumeStep::DiscardSnapshot => "discard_snapshot",
        }
    }
}

/// The kinds of volume operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeOpKind {
    Create,
    Restore,
    Fork,
    Extend,
    Snapshot,
    Destroy,
}

impl VolumeOpKind {
    pub const ALL: [VolumeOpKind; 6] = [
        VolumeOpKind::Create,
        VolumeOpKind::Restore,
        VolumeOpKind::Fork,
        VolumeOpKind::Extend,
        VolumeOpKind::Snapshot,
        VolumeOpKind::Destroy,
    ];

    /// The name in logs and crash points: `volume_` and the kind, so it
    /// never reads as a machine operation.
    pub fn name(self) -> &'static str {
        match self {
            VolumeOpKind::Create => "volume_create",
            VolumeOpKind::Restore => "volume_restore",
            VolumeOpKind::Fork => "volume_fork",
            VolumeOpKind::Extend => "volume_extend",
            VolumeOpKind::Snapshot => "volume_snapshot",
            VolumeOpKind::Destroy => "volume_destroy",
        }
    }

    fn steps(self) -> &'static [VolumeStep] {
        match self {
            VolumeOpKind::Create => &[VolumeStep::AllocateImage],
            VolumeOpKind::Restore => &[VolumeStep::RestoreSnapshot],
            VolumeOpKind::Fork => &[VolumeStep::CopyVolume],
            VolumeOpKind::Extend => &[VolumeStep::GrowFilesystem],
            VolumeOpKind::Snapshot => &[VolumeStep::TakeSnapshot],
            VolumeOpKind::Destroy => &[VolumeStep::RemoveImage],
        }
    }

    /// Whether the operation builds a new volume, so that a failure
    /// leaves none.
    pub fn builds(self) -> bool {
        matches!(
            self,
            VolumeOpKind::Create | VolumeOpKind::Restore | VolumeOpKind::Fork
        )
    }

    /// The state the volume shows while the operation runs.
    fn state(self) -> VolumeState {
        match self {
            VolumeOpKind::Create => V::Creating,
            VolumeOpKind::Restore => V::Restoring,
            VolumeOpKind::Fork => V::Hydrating,
            VolumeOpKind::Extend => V::Extending,
            // A volume being snapshotted stays usable and shows so.
            VolumeOpKind::Snapshot => V::Created,
            VolumeOpKind::Destroy => V::Destroying,
        }
    }
}

/// What a new volume is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// An empty filesystem of this type (`ext4`, `xfs`).
    Empty { fstype: String },
    /// A copy of this snapshot.
    Snapshot { id: String, fstype: String },
    /// A copy of this volume.
    Volume { id: String, fstype: String },
}

/// Everything a volume operation needs to run or resume; the durable
/// engine stores it with the operation. (Its fields are those recorded
/// before the model existed, so such a record resumes; the store's
/// migration 5 turned the wire volume those kept in `previous` into a
/// record.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumePlan {
    pub kind: VolumeOpKind,
    /// The size the image must have, in bytes.
    #[serde(default)]
    pub size: u64,
    /// Snapshot to restore, volume to fork, or snapshot to take.
    #[serde(default)]
    pub source: Option<String>,
    /// For snapshots: taken by the daily schedule rather than on demand.
    #[serde(default)]
    pub scheduled: bool,
    #[serde(default)]
    pub fstype: Option<String>,
    /// The record before the operation, put back if it fails.
    #[serde(default)]
    pub previous: Option<VolumeRecord>,
}

impl VolumePlan {
    fn new(kind: VolumeOpKind) -> VolumePlan {
        VolumePlan {
            kind,
            size: 0,
            source: None,
            scheduled: false,
            fstype: None,
            previous: None,
        }
    }

    /// The plan that builds a new volume of `size` bytes from `source`.
    pub fn build(source: VolumeSource, size: u64) -> VolumePlan {
        let (kind, from, fstype) = match source {
            VolumeSource::Empty { fstype } => (VolumeOpKind::Create, None, fstype),
            VolumeSource::Snapshot { id, fstype } => (VolumeOpKind::Restore, Some(id), fstype),
            VolumeSource::Volume { id, fstype } => (VolumeOpKind::Fork, Some(id), fstype),
        };
        VolumePlan {
            size,
            source: from,
            fstype: Some(fstype),
            ..VolumePlan::new(kind)
        }
    }

    /// The plan, remembering `volume` as it was before, to be put back if
    /// the operation fails.
    pub fn on(mut self, volume: &VolumeRecord) -> VolumePlan {
        self.previous = Some(volume.clone());
        self
    }

    /// The state the volume shows while the operation runs (recorded with
    /// the operation).
    pub fn state_during(&self) -> VolumeState {
        self.kind.state()
    }

    /// Where the volume settles when every step is done.
    pub fn settle(&self) -> VolumeState {
        match self.kind {
            VolumeOpKind::Destroy => V::Destroyed,
            _ => V::Created,
        }
    }

    /// Where a failed operation leaves the volume: a volume being built is
    /// gone; any other is put back as it was (`None`: the previous record).
    pub fn failed_state(&self) -> Option<VolumeState> {
        self.kind.builds().then_some(V::Destroyed)
    }
}

impl Operation for VolumePlan {
    type Step = VolumeStep;

    fn kind(&self) -> &'static str {
        self.kind.name()
    }

    fn steps(&self) -> &[VolumeStep] {
        self.kind.steps()
    }

    fn compensation(&self) -> &'static [VolumeStep] {
        match self.kind {
            kind if kind.builds() => &[VolumeStep::RemoveImage],
            VolumeOpKind::Snapshot => &[VolumeStep::DiscardSnapshot],
            _ => &[],
        }
    }
}

/// What a caller, or the snapshot schedule, asks of an existing volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeIntent {
    /// Grow it.
    Extend,
    /// Take a snapshot.
    Snapshot,
    Destroy,
    /// A machine's config mounts it.
    Mount,
    /// Copy it into a new volume.
    Fork,
    /// Change its snapshot settings, which no step acts on.
    Edit,
}

impl VolumeIntent {
    fn wanted(self) -> &'static str {
        match self {
            VolumeIntent::Extend => "extended",
            VolumeIntent::Snapshot => "snapshotted",
            VolumeIntent::Destroy => "destroyed",
            VolumeIntent::Mount => "mounted",
            VolumeIntent::Fork => "forked",
            VolumeIntent::Edit => "changed",
        }
    }
}

/// States in which a machine may mount a volume: growing is online.
const MOUNTABLE: [VolumeState; 2] = [V::Created, V::Extending];

/// Decides what `intent` does to a volume in `state`: the plan to run (its
/// sizes and sources are the caller's to set), a call that proceeds, or a
/// refusal naming the states it is allowed from.
///
/// The volume lifecycle's one table. A new volume is not asked anything:
/// [`VolumePlan::build`] plans it.
pub fn transition(
    state: VolumeState,
    intent: VolumeIntent,
) -> Result<Transition<VolumePlan>, Refusal> {
    let allowed: &[VolumeState] = match intent {
        VolumeIntent::Mount => &MOUNTABLE,
        _ => &[V::Created],
    };
    if !allowed.contains(&state) {
        return Err(Refusal::in_state(
            "volume",
            state.as_str(),
            state == V::Destroyed,
            state.is_transitional(),
            allowed.iter().map(|s| s.as_str()).collect(),
            intent.wanted(),
            Wording::OnlyAllowed(None),
        ));
    }
    let run = |kind| Ok(Transition::Run(VolumePlan::new(kind)));
    match intent {
        VolumeIntent::Extend => run(VolumeOpKind::Extend),
        VolumeIntent::Snapshot => run(VolumeOpKind::Snapshot),
        VolumeIntent::Destroy => run(VolumeOpKind::Destroy),
        VolumeIntent::Mount | VolumeIntent::Fork | VolumeIntent::Edit => Ok(Transition::Proceed),
    }
}

#[cfg(test)]
mod tests;
