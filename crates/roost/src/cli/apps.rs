//! `roost apps`: create, list and destroy apps.

use super::output::{done, print_json, print_table, show};
use anyhow::Result;
use clap::Subcommand;
use roost_client::Client;

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Create an app; prints its name.
    Create { name: String },
    /// List apps with their machine counts.
    List,
    /// Destroy an app: its machines, and its buckets with their objects.
    Destroy { name: String },
}

pub async fn run(client: &Client, cmd: AppsCommand, json: bool) -> Result<()> {
    match cmd {
        AppsCommand::Create { name } => {
            let app = client.create_app(&name).await?;
            show(json, &app, &app.name)
        }
        AppsCommand::List => {
            let list = client.list_apps().await?;
            if json {
                return print_json(&list);
            }
            let rows = list
                .apps
                .iter()
                .map(|a| vec![a.name.clone(), a.machine_count.to_string()])
                .collect();
            print_table(&["NAME", "MACHINES"], rows)
        }
        AppsCommand::Destroy { name } => {
            client.delete_app(&name).await?;
            done(json, format!("destroyed app {name}"))
        }
    }
}
