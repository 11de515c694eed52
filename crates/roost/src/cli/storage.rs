//! `roost storage`: S3 buckets owned by apps, like `fly storage` (Tigris).

use super::output::{print_json, print_line, print_table, show};
use super::AppArg;
use anyhow::Result;
use clap::Subcommand;
use roost_client::Client;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Create a bucket owned by the app (and the app's key pair if it has
    /// none); its machines get AWS_* and BUCKET_NAME at their next create,
    /// update or restart. Prints the credentials.
    Create {
        #[command(flatten)]
        app: AppArg,
        /// Bucket name (default: `<app>-bucket`).
        #[arg(long)]
        name: Option<String>,
    },
    /// List buckets (all, or one app's with --app).
    List {
        #[arg(short, long)]
        app: Option<String>,
    },
    /// Delete a bucket and every object in it.
    Destroy {
        name: String,
        #[command(flatten)]
        app: AppArg,
    },
}

fn field(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_string()
}

pub async fn run(client: &Client, cmd: StorageCommand, json: bool) -> Result<()> {
    match cmd {
        StorageCommand::Create { app, name } => {
            let created: Value = client
                .post(
                    &format!("/v1/apps/{}/storage", app.app),
                    &serde_json::json!({ "name": name }),
                )
                .await?;
            if json {
                return print_json(&created);
            }
            for (var, key) in [
                ("AWS_ACCESS_KEY_ID", "access_key_id"),
                ("AWS_SECRET_ACCESS_KEY", "secret_access_key"),
                ("AWS_ENDPOINT_URL_S3", "endpoint"),
                ("AWS_REGION", "region"),
                ("BUCKET_NAME", "name"),
            ] {
                print_line(format!("{var}={}", field(&created, key)))?;
            }
            Ok(())
        }
        StorageCommand::List { app } => {
            let path = match &app {
                Some(app) => format!("/v1/apps/{app}/storage"),
                None => "/v1/storage".to_string(),
            };
            let buckets: Vec<Value> = client.get(&path).await?;
            if json {
                return print_json(&buckets);
            }
            let rows = buckets
                .iter()
                .map(|b| vec![field(b, "name"), field(b, "app"), field(b, "created_at")])
                .collect();
            print_table(&["NAME", "APP", "CREATED"], rows)
        }
        StorageCommand::Destroy { name, app } => {
            let done: Value = client
                .delete(&format!("/v1/apps/{}/storage/{name}", app.app))
                .await?;
            show(json, &done, &format!("destroyed bucket {name}"))
        }
    }
}
