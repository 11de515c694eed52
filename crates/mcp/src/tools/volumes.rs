//! Volume tools: persistent volumes, their snapshots and forks.

use super::reply::{count, reply_on, text, Subject};
use super::{AppArgs, Tools};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use roost_types::{CreateVolumeRequest, ExtendVolumeRequest, Volume};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A volume of an app.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct VolumeArgs {
    /// App the volume belongs to.
    app: String,
    /// Volume id: "vol_" and 16 lowercase letters or digits, as returned by create_volume or
    /// list_volumes.
    volume_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateVolumeArgs {
    /// App that will own the volume (see list_apps / create_app); only its machines can mount it.
    app: String,
    /// Volume name: 1-30 lowercase letters, digits and '_', e.g. "data". Names need not be
    /// unique; the returned id identifies the volume.
    name: String,
    /// Size in GB (GiB), from 1 to this host's limit. Default: 1 for a new volume, the source's
    /// size when restoring or forking (which is also the least allowed then).
    size_gb: Option<u64>,
    /// Restore: fill the new volume from this snapshot ("vs_...", see
    /// list_volume_snapshots). Omit for an empty volume.
    snapshot_id: Option<String>,
    /// Fork: the new volume starts as a copy of this volume ("vol_...") of the same app, taken
    /// now (consistent even while a machine writes to it). Omit for an empty volume; not
    /// together with snapshot_id.
    source_volume_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ExtendVolumeArgs {
    /// App the volume belongs to.
    app: String,
    /// Volume id ("vol_...").
    volume_id: String,
    /// The new size in GB (GiB): larger than the current size_gb (volumes only grow), at most
    /// this host's limit.
    size_gb: u64,
}

/// The fields of a volume a robot needs to use it.
#[derive(Debug, Serialize)]
struct VolumeSummary {
    id: String,
    name: String,
    state: String,
    size_gb: u64,
    /// Bytes in use and still available, from the filesystem (0 while it is being built).
    used_bytes: u64,
    available_bytes: u64,
    fstype: String,
    attached_machine_id: Option<String>,
    snapshot_retention: u32,
    auto_backup_enabled: bool,
    created_at: String,
}

impl From<&Volume> for VolumeSummary {
    fn from(v: &Volume) -> VolumeSummary {
        VolumeSummary {
            id: v.id.clone(),
            name: v.name.clone(),
            state: v.state.clone(),
            size_gb: v.size_gb,
            used_bytes: v.blocks.saturating_sub(v.blocks_free) * v.block_size,
            available_bytes: v.blocks_avail * v.block_size,
            fstype: v.fstype.clone(),
            attached_machine_id: v.attached_machine_id.clone(),
            snapshot_retention: v.snapshot_retention,
            auto_backup_enabled: v.auto_backup_enabled,
            created_at: v.created_at.clone(),
        }
    }
}

fn volume_line(v: &VolumeSummary) -> String {
    format!(
        "volume {} ({}) is {}, {} GB",
        v.id, v.name, v.state, v.size_gb
    )
}

#[tool_router(router = volumes_router, vis = "pub(super)")]
impl Tools {
    /// List an app's volumes (destroyed ones excluded). Returns {"volumes": [volume summary]};
    /// attached_machine_id names the machine that mounts a volume.
    #[tool(annotations(read_only_hint = true))]
    async fn list_volumes(&self, Parameters(args): Parameters<AppArgs>) -> CallToolResult {
        let result = self.machines.list_volumes(&args.app).map(|volumes| {
            json!({"volumes": volumes.iter().map(VolumeSummary::from).collect::<Vec<_>>()})
        });
        reply_on(Subject::Volume, result, |v| {
            format!("{} volumes in app {}", count(&v["volumes"]), args.app)
        })
    }

    /// Create a volume: a persistent filesystem of a fixed size that outlives machines. Empty,
    /// restored from a snapshot (snapshot_id) or forked from another volume
    /// (source_volume_id). Mount it with run_machine's mounts, e.g. [{"volume": id, "path":
    /// "/data"}]; one machine at a time. Returns the volume summary {"id", "name", "state",
    /// "size_gb", "used_bytes", "available_bytes", "fstype", "attached_machine_id",
    /// "snapshot_retention" (days), "auto_backup_enabled" (a snapshot a day), "created_at"};
    /// keep "id" as volume_id for the other volume tools.
    #[tool]
    async fn create_volume(
        &self,
        Parameters(args): Parameters<CreateVolumeArgs>,
    ) -> CallToolResult {
        let request = CreateVolumeRequest {
            name: Some(args.name),
            size_gb: args.size_gb,
            snapshot_id: args.snapshot_id,
            source_volume_id: args.source_volume_id,
            ..Default::default()
        };
        let result = self
            .machines
            .create_volume(&args.app, request)
            .await
            .map(|v| VolumeSummary::from(&v));
        reply_on(Subject::Volume, result, volume_line)
    }

    /// Get one volume: state, size, space used and available, and the machine mounting it.
    /// Returns the volume summary.
    #[tool(annotations(read_only_hint = true))]
    async fn get_volume(&self, Parameters(args): Parameters<VolumeArgs>) -> CallToolResult {
        let result = self
            .machines
            .get_volume(&args.app, &args.volume_id)
            .map(|v| VolumeSummary::from(&v));
        reply_on(Subject::Volume, result, volume_line)
    }

    /// Grow a volume to size_gb (volumes never shrink), online while a machine uses it, so
    /// df inside shows the new size at once. When the host cannot grow it online,
    /// "needs_restart" is true and the machine sees the new size after restart_machine.
    /// Returns {"volume": volume summary, "needs_restart"}.
    #[tool]
    async fn extend_volume(
        &self,
        Parameters(args): Parameters<ExtendVolumeArgs>,
    ) -> CallToolResult {
        let request = ExtendVolumeRequest {
            size_gb: args.size_gb,
        };
        let result = self
            .machines
            .extend_volume(&args.app, &args.volume_id, request)
            .await
            .map(|r| json!({"volume": VolumeSummary::from(&r.volume), "needs_restart": r.needs_restart}));
        reply_on(Subject::Volume, result, |v| {
            let restart = if v["needs_restart"] == true {
                "; its machine sees the new size after restart_machine"
            } else {
                ""
            };
            format!(
                "volume {} is now {} GB{restart}",
                text(&v["volume"]["id"]),
                v["volume"]["size_gb"]
            )
        })
    }

    /// Destroy a volume and its data for good. Refused while a machine mounts it: destroy that
    /// machine first. Its snapshots stay until their retention ends, so keep the volume_id to
    /// call list_volume_snapshots and restore one with create_volume. Returns {"id",
    /// "destroyed": true}.
    #[tool(annotations(destructive_hint = true))]
    async fn destroy_volume(&self, Parameters(args): Parameters<VolumeArgs>) -> CallToolResult {
        let result = self
            .machines
            .destroy_volume(&args.app, &args.volume_id)
            .await
            .map(|v| json!({"id": v.id, "destroyed": true}));
        reply_on(Subject::Volume, result, |v| {
            format!("destroyed volume {}", text(&v["id"]))
        })
    }

    /// List a volume's snapshots, oldest first (also of a destroyed volume, until their
    /// retention ends). Returns {"snapshots": [{"id", "created_at", "type" ("on-demand" or
    /// "scheduled"), "status", "size" (stored bytes, compressed), "volume_size" (bytes of the
    /// volume it restores), "digest"}]}; pass an id as create_volume's snapshot_id to restore.
    #[tool(annotations(read_only_hint = true))]
    async fn list_volume_snapshots(
        &self,
        Parameters(args): Parameters<VolumeArgs>,
    ) -> CallToolResult {
        let result = self
            .machines
            .list_volume_snapshots(&args.app, &args.volume_id)
            .map(|snapshots| json!({ "snapshots": snapshots }));
        reply_on(Subject::Volume, result, |v| {
            format!(
                "{} snapshots of volume {}",
                count(&v["snapshots"]),
                args.volume_id
            )
        })
    }

    /// Snapshot a volume now, e.g. before a risky change. Safe while a machine writes to it:
    /// the snapshot holds what a power cut at that instant would leave (every fsynced write).
    /// Snapshots are deduplicated, so frequent ones are cheap. Returns the snapshot {"id",
    /// "created_at", "type", "status", "size", "volume_size", "digest"}.
    #[tool]
    async fn create_volume_snapshot(
        &self,
        Parameters(args): Parameters<VolumeArgs>,
    ) -> CallToolResult {
        let result = self
            .machines
            .create_volume_snapshot(&args.app, &args.volume_id)
            .await;
        reply_on(Subject::Volume, result, |s| {
            format!("snapshot {} of volume {}", s.id, args.volume_id)
        })
    }
}
