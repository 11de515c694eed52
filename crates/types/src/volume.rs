use serde::{Deserialize, Serialize};

/// `Volume`: a persistent filesystem of an app, as Fly reports it.
/// `blocks*` figures are the filesystem's, in `block_size` units.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    pub name: String,
    /// `creating`, `restoring`, `hydrating` (forking), `created`,
    /// `extending`, `destroying` or `destroyed`.
    pub state: String,
    pub size_gb: u64,
    pub region: String,
    pub zone: String,
    pub encrypted: bool,
    #[serde(default)]
    pub attached_machine_id: Option<String>,
    #[serde(default)]
    pub attached_alloc_id: Option<String>,
    pub created_at: String,
    pub blocks: u64,
    pub block_size: u64,
    pub blocks_free: u64,
    pub blocks_avail: u64,
    pub fstype: String,
    /// Days a snapshot is kept.
    pub snapshot_retention: u32,
    /// Whether a snapshot is taken every day.
    pub auto_backup_enabled: bool,
    pub host_dedication_key: String,
}

/// `CreateVolumeRequest`. Unlisted Fly fields (`compute`,
/// `require_unique_zone`, `machines_only`, ...) are accepted and ignored:
/// roost has one host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateVolumeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_gb: Option<u64>,
    /// Restore from this snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Fork this volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_volume_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_retention: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_backup_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstype: Option<String>,
}

/// `UpdateVolumeRequest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateVolumeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_retention: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_backup_enabled: Option<bool>,
}

/// `ExtendVolumeRequest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExtendVolumeRequest {
    #[serde(default)]
    pub size_gb: u64,
}

/// `ExtendVolumeResponse`. `needs_restart` is true when the machine using
/// the volume sees the new size only after its next start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtendVolumeResponse {
    pub volume: Volume,
    pub needs_restart: bool,
}

/// `VolumeSnapshot`. `size` is the compressed bytes a restore reads;
/// `volume_size` (newer Fly field) is the volume's size in bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeSnapshot {
    pub id: String,
    pub created_at: String,
    pub digest: String,
    pub size: u64,
    /// `created` once stored.
    pub status: String,
    #[serde(default)]
    pub volume_size: u64,
    /// `on-demand` or `scheduled`, as Fly names snapshot kinds.
    #[serde(default, rename = "type")]
    pub kind: String,
}
