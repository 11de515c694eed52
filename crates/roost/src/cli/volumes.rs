//! `roost volumes`: persistent volumes, their snapshots and forks.

use super::output::{print_json, print_line, print_table, show};
use super::AppArg;
use anyhow::{Context, Result};
use clap::Subcommand;
use roost_client::Client;
use roost_types::{CreateVolumeRequest, MachineMount, Volume, VolumeSnapshot};

#[derive(Debug, Subcommand)]
pub enum VolumesCommand {
    /// Create a volume (empty, or restored from a snapshot); prints its id.
    Create {
        name: String,
        #[command(flatten)]
        app: AppArg,
        /// Size in GB (GiB); defaults to 1, or to the snapshot's size.
        #[arg(long)]
        size: Option<u64>,
        /// Restore this snapshot into the new volume.
        #[arg(long)]
        snapshot: Option<String>,
        /// Days scheduled snapshots are kept (1-60, default 5).
        #[arg(long)]
        retention: Option<u32>,
        /// Take no daily snapshots.
        #[arg(long)]
        no_auto_backup: bool,
        /// Filesystem: ext4 or xfs (default: what can grow online on this host).
        #[arg(long)]
        fstype: Option<String>,
    },
    /// List the app's volumes.
    List {
        #[command(flatten)]
        app: AppArg,
    },
    /// Show a volume, with its free space and snapshot settings.
    Show {
        id: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Grow a volume (online while its machine runs).
    Extend {
        id: String,
        #[command(flatten)]
        app: AppArg,
        /// New size in GB; larger than the current one.
        #[arg(long)]
        size: u64,
    },
    /// Destroy a volume (refused while a machine mounts it).
    Destroy {
        id: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Copy a volume, live, into a new one; prints the new id.
    Fork {
        id: String,
        #[command(flatten)]
        app: AppArg,
        /// Name of the new volume (default: the source's).
        #[arg(long)]
        name: Option<String>,
        /// Size in GB (at least the source's).
        #[arg(long)]
        size: Option<u64>,
    },
    /// List or take a volume's snapshots.
    #[command(subcommand)]
    Snapshots(SnapshotsCommand),
}

#[derive(Debug, Subcommand)]
pub enum SnapshotsCommand {
    /// List a volume's snapshots.
    List {
        volume: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Take a snapshot now; prints its id.
    Create {
        volume: String,
        #[command(flatten)]
        app: AppArg,
    },
}

/// Parses `roost machine run --volume VOLUME_ID:/PATH` values.
pub fn parse_mounts(values: &[String]) -> Result<Vec<MachineMount>> {
    values
        .iter()
        .map(|value| {
            let (volume, path) = value
                .split_once(':')
                .with_context(|| format!("--volume {value:?} must look like VOLUME_ID:/PATH"))?;
            Ok(MachineMount {
                volume: volume.to_string(),
                path: path.to_string(),
                ..Default::default()
            })
        })
        .collect()
}

const HEADER: [&str; 7] = ["ID", "NAME", "STATE", "SIZE", "FS", "ATTACHED", "CREATED"];

fn rows(volumes: &[Volume]) -> Vec<Vec<String>> {
    volumes
        .iter()
        .map(|v| {
            vec![
                v.id.clone(),
                v.name.clone(),
                v.state.clone(),
                format!("{}GB", v.size_gb),
                v.fstype.clone(),
                v.attached_machine_id.clone().unwrap_or_default(),
                v.created_at.clone(),
            ]
        })
        .collect()
}

fn snapshot_rows(snapshots: &[VolumeSnapshot]) -> Vec<Vec<String>> {
    snapshots
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.kind.clone(),
                s.size.to_string(),
                s.created_at.clone(),
            ]
        })
        .collect()
}

pub async fn run(client: &Client, cmd: VolumesCommand, json: bool) -> Result<()> {
    match cmd {
        VolumesCommand::Create {
            name,
            app,
            size,
            snapshot,
            retention,
            no_auto_backup,
            fstype,
        } => {
            let req = CreateVolumeRequest {
                name: Some(name),
                size_gb: size,
                snapshot_id: snapshot,
                snapshot_retention: retention,
                auto_backup_enabled: Some(!no_auto_backup),
                fstype,
                ..Default::default()
            };
            let volume = client.create_volume(&app.app, &req).await?;
            show(json, &volume, &volume.id)
        }
        VolumesCommand::List { app } => {
            let volumes = client.list_volumes(&app.app).await?;
            if json {
                return print_json(&volumes);
            }
            print_table(&HEADER, rows(&volumes))
        }
        VolumesCommand::Show { id, app } => {
            let volume = client.get_volume(&app.app, &id).await?;
            if json {
                return print_json(&volume);
            }
            print_table(&HEADER, rows(std::slice::from_ref(&volume)))?;
            print_line(format!(
                "\n{} of {} blocks of {} bytes free; snapshots kept {} days, daily snapshots {}",
                volume.blocks_avail,
                volume.blocks,
                volume.block_size,
                volume.snapshot_retention,
                if volume.auto_backup_enabled {
                    "on"
                } else {
                    "off"
                }
            ))
        }
        VolumesCommand::Extend { id, app, size } => {
            let response = client.extend_volume(&app.app, &id, size).await?;
            let note = if response.needs_restart {
                " (the machine sees it after its next start)"
            } else {
                ""
            };
            show(json, &response, &format!("{id} is now {size}GB{note}"))
        }
        VolumesCommand::Destroy { id, app } => {
            let volume = client.destroy_volume(&app.app, &id).await?;
            show(json, &volume, &format!("destroyed {id}"))
        }
        VolumesCommand::Fork {
            id,
            app,
            name,
            size,
        } => {
            let name = match name {
                Some(name) => name,
                None => client.get_volume(&app.app, &id).await?.name,
            };
            let req = CreateVolumeRequest {
                name: Some(name),
                size_gb: size,
                source_volume_id: Some(id),
                ..Default::default()
            };
            let volume = client.create_volume(&app.app, &req).await?;
            show(json, &volume, &volume.id)
        }
        VolumesCommand::Snapshots(SnapshotsCommand::List { volume, app }) => {
            let snapshots = client.list_volume_snapshots(&app.app, &volume).await?;
            if json {
                return print_json(&snapshots);
            }
            print_table(
                &["ID", "TYPE", "SIZE", "CREATED"],
                snapshot_rows(&snapshots),
            )
        }
        VolumesCommand::Snapshots(SnapshotsCommand::Create { volume, app }) => {
            let snapshot = client.create_volume_snapshot(&app.app, &volume).await?;
            show(json, &snapshot, &snapshot.id)
        }
    }
}
