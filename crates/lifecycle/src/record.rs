//! Apps, machines, volumes and snapshots as roost keeps them: the records the
//! service changes, the store persists column by column and the edge
//! proxy routes on.
//!
//! They are not the Fly wire types. [`roost_types::Machine`] is what a
//! client is shown, and holds more than is kept with the machine: its
//! events (a table of their own, read with a bound), its check results and
//! egress counters (in memory, reported by the proxies) and a create's
//! lease nonce (known to that one answer). A [`roost_types::Volume`] shows
//! which machine it is attached to (what the machines' configs say) and
//! its filesystem's usage (what the host says), neither kept with the
//! volume. Each record's `into_view` is the one place it meets its wire
//! type, so the stored layout and the API can change apart.

use crate::{MachineState, VolumeState};
use roost_types::{
    CheckStatus, ImageRef, Machine, MachineConfig, MachineEgress, MachineEvent, Volume,
    VolumeSnapshot,
};
use serde::{Deserialize, Serialize};

/// An app: a namespace of machines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    pub id: String,
    pub name: String,
    pub org_slug: String,
    pub network: String,
    pub created_at: String,
    /// Where the app's machines may connect through the egress proxy;
    /// written at create (the daemon's default then), `None` for apps
    /// from before egress existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<roost_types::EgressPolicy>,
}

/// A machine: what it is, what runs it and how far it got.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineRecord {
    pub id: String,
    pub app: String,
    pub name: String,
    pub state: MachineState,
    pub region: String,
    /// The version of the config: changes at every update.
    pub instance_id: String,
    /// The machine's address on its app's private network; empty without
    /// one.
    pub private_ip: String,
    /// The user's spec, as sent (also kept per version).
    pub config: MachineConfig,
    /// The image `config.image` resolved to at create or update.
    pub image_ref: ImageRef,
    pub created_at: String,
    pub updated_at: String,
    /// While true, the edge proxy routes nothing to the machine.
    pub cordoned: bool,
    /// OCI runtime that runs this machine (`crun` or `runc`).
    pub runtime: String,
    /// Host pid of the machine's init while it runs.
    pub init_pid: Option<u32>,
    /// Automatic restarts since the last user-requested start.
    pub restart_count: u32,
}

/// What a machine's wire view shows beside its record, none of it kept
/// with the machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shown {
    /// Its newest events, newest first.
    pub events: Vec<MachineEvent>,
    /// The latest results of its health checks.
    pub checks: Vec<CheckStatus>,
    /// The nonce of the lease a create took.
    pub nonce: Option<String>,
    /// Its traffic through the egress proxy.
    pub egress: Option<MachineEgress>,
}

impl MachineRecord {
    /// The machine as the Fly Machines API shows it, with `shown`.
    pub fn into_view(self, shown: Shown) -> Machine {
        Machine {
            id: self.id,
            name: self.name,
            state: self.state,
            region: self.region,
            instance_id: self.instance_id,
            private_ip: self.private_ip,
            config: self.config,
            image_ref: self.image_ref,
            created_at: self.created_at,
            updated_at: self.updated_at,
            events: shown.events,
            checks: shown.checks,
            nonce: shown.nonce,
            cordoned: self.cordoned,
            egress: shown.egress,
        }
    }
}

/// A volume: what it is, its snapshot settings and how far its
/// operations got. It is also what a volume operation's plan remembers to
/// put back if the operation fails, hence serde (the field names are the
/// wire type's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub id: String,
    pub app: String,
    pub name: String,
    pub state: VolumeState,
    pub size_gb: u64,
    pub region: String,
    pub zone: String,
    pub encrypted: bool,
    pub created_at: String,
    /// The filesystem it holds (`ext4` or `xfs`).
    pub fstype: String,
    /// Days a snapshot is kept.
    pub snapshot_retention: u32,
    /// Whether a snapshot is taken every day.
    pub auto_backup_enabled: bool,
    pub host_dedication_key: String,
}

/// What a volume's wire view shows beside its record, none of it kept
/// with the volume.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeShown {
    /// The machine whose config mounts it.
    pub attached_machine_id: Option<String>,
    /// Its filesystem's figures, in `block_size` units (zero while its
    /// image is not on the host).
    pub block_size: u64,
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_avail: u64,
}

impl VolumeRecord {
    /// The volume as the Fly Machines API shows it, with `shown`. Fly's
    /// allocation is roost's machine.
    pub fn into_view(self, shown: VolumeShown) -> Volume {
        Volume {
            id: self.id,
            name: self.name,
            state: self.state.as_str().to_string(),
            size_gb: self.size_gb,
            region: self.region,
            zone: self.zone,
            encrypted: self.encrypted,
            attached_alloc_id: shown.attached_machine_id.clone(),
            attached_machine_id: shown.attached_machine_id,
            created_at: self.created_at,
            blocks: shown.blocks,
            block_size: shown.block_size,
            blocks_free: shown.blocks_free,
            blocks_avail: shown.blocks_avail,
            fstype: self.fstype,
            snapshot_retention: self.snapshot_retention,
            auto_backup_enabled: self.auto_backup_enabled,
            host_dedication_key: self.host_dedication_key,
        }
    }
}

/// A snapshot of a volume; it outlives the volume until its retention
/// ends, so it names its app itself.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRecord {
    pub id: String,
    pub app: String,
    pub volume_id: String,
    pub created_at: String,
    /// Creation time in milliseconds since the epoch, for retention.
    pub created_ms: i64,
    pub digest: String,
    /// The compressed bytes a restore reads.
    pub stored_bytes: u64,
    /// The volume's size in bytes when it was taken.
    pub volume_size: u64,
    /// `created` once stored (Fly's word; the text is kept as written).
    pub status: String,
    /// `on-demand` or `scheduled`, as Fly names snapshot kinds.
    pub kind: String,
}

impl SnapshotRecord {
    /// The snapshot as the Fly Machines API shows it.
    pub fn into_view(self) -> VolumeSnapshot {
        VolumeSnapshot {
            id: self.id,
            created_at: self.created_at,
            digest: self.digest,
            size: self.stored_bytes,
            status: self.status,
            volume_size: self.volume_size,
            kind: self.kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_carries_the_record_and_what_is_shown_beside_it() {
        let record = MachineRecord {
            id: "0a1b2c3d4e5f60".into(),
            app: "web".into(),
            name: "web-0a1b2c".into(),
            state: MachineState::Started,
            region: "local".into(),
            instance_id: "01V1".into(),
            private_ip: "fdaa:0:1::2".into(),
            config: MachineConfig {
                image: "busybox".into(),
                ..Default::default()
            },
            image_ref: ImageRef {
                digest: "sha256:abc".into(),
                ..Default::default()
            },
            created_at: "t0".into(),
            updated_at: "t1".into(),
            cordoned: true,
            runtime: "runc".into(),
            init_pid: Some(42),
            restart_count: 2,
        };
        let shown = Shown {
            events: vec![MachineEvent {
                id: "e1".into(),
                kind: "start".into(),
                status: "started".into(),
                source: "user".into(),
                timestamp: 1,
                request: None,
            }],
            checks: vec![CheckStatus {
                name: "alive".into(),
                status: "passing".into(),
                ..Default::default()
            }],
            nonce: Some("n".into()),
            egress: Some(MachineEgress {
                allowed: 3,
                ..Default::default()
            }),
        };
        let view = record.clone().into_view(shown.clone());
        assert_eq!(
            view,
            Machine {
                id: record.id,
                name: record.name,
                state: record.state,
                region: record.region,
                instance_id: record.instance_id,
                private_ip: record.private_ip,
                config: record.config,
                image_ref: record.image_ref,
                created_at: record.created_at,
                updated_at: record.updated_at,
                events: shown.events,
                checks: shown.checks,
                nonce: shown.nonce,
                cordoned: true,
                egress: shown.egress,
            }
        );
    }

    #[test]
    fn a_volume_view_carries_the_record_and_its_attachment_and_usage() {
        let record = VolumeRecord {
            id: "vol_0123456789abcdef".into(),
            app: "web".into(),
            name: "data".into(),
            state: VolumeState::Extending,
            size_gb: 3,
            region: "local".into(),
            zone: "z".into(),
            encrypted: true,
            created_at: "t0".into(),
            fstype: "xfs".into(),
            snapshot_retention: 7,
            auto_backup_enabled: true,
            host_dedication_key: "k".into(),
        };
        let shown = VolumeShown {
            attached_machine_id: Some("0a1b2c3d4e5f60".into()),
            block_size: 4096,
            blocks: 10,
            blocks_free: 8,
            blocks_avail: 7,
        };
        assert_eq!(
            record.clone().into_view(shown.clone()),
            Volume {
                id: record.id.clone(),
                name: record.name.clone(),
                state: "extending".into(),
                size_gb: 3,
                region: record.region.clone(),
                zone: record.zone.clone(),
                encrypted: true,
                attached_machine_id: shown.attached_machine_id.clone(),
                attached_alloc_id: shown.attached_machine_id,
                created_at: record.created_at.clone(),
                blocks: 10,
                block_size: 4096,
                blocks_free: 8,
                blocks_avail: 7,
                fstype: record.fstype.clone(),
                snapshot_retention: 7,
                auto_backup_enabled: true,
                host_dedication_key: record.host_dedication_key.clone(),
            }
        );
        let kept = serde_json::to_value(&record).unwrap();
        assert_eq!(kept["state"], "extending");
        assert_eq!(
            serde_json::from_value::<VolumeRecord>(kept).unwrap(),
            record
        );
    }

    #[test]
    fn a_snapshot_view_carries_every_field() {
        let record = SnapshotRecord {
            id: "vs_1".into(),
            app: "web".into(),
            volume_id: "vol_1".into(),
            created_at: "t0".into(),
            created_ms: 5,
            digest: "sha256:feed".into(),
            stored_bytes: 4096,
            volume_size: 1 << 30,
            status: "created".into(),
            kind: "scheduled".into(),
        };
        assert_eq!(
            record.into_view(),
            VolumeSnapshot {
                id: "vs_1".into(),
                created_at: "t0".into(),
                digest: "sha256:feed".into(),
                size: 4096,
                status: "created".into(),
                volume_size: 1 << 30,
                kind: "scheduled".into(),
            }
        );
    }
}
