//! `roost image`: the local image store (import, registry pull, remove, prune).

use super::output::{done, print_json, print_table, show};
use anyhow::{Context, Result};
use clap::Subcommand;
use roost_client::Client;
use roost_types::RegistryAuth;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an OCI layout directory, oci-archive or docker-save tarball.
    Import {
        path: std::path::PathBuf,
        /// Name to store it under, `repo:tag`.
        #[arg(long)]
        name: String,
    },
    /// List local images with their digests and sizes.
    List,
    /// Pull an image from its registry (`HOST[:PORT]/REPO[:TAG]` or `...@sha256:...`).
    Pull {
        reference: String,
        /// Registry username; the password comes from ROOST_REGISTRY_PASSWORD.
        #[arg(long, requires = "password")]
        username: Option<String>,
        #[arg(
            long,
            env = "ROOST_REGISTRY_PASSWORD",
            hide_env_values = true,
            hide = true
        )]
        password: Option<String>,
    },
    /// Remove an image (refused while a machine uses it); `prune` frees its layers.
    Rm { reference: String },
    /// Delete layers and blobs no image or machine references.
    Prune,
}

pub async fn run(client: &Client, cmd: ImageCommand, json: bool) -> Result<()> {
    match cmd {
        ImageCommand::Import { path, name } => {
            let path = std::fs::canonicalize(&path)
                .with_context(|| format!("cannot find {}", path.display()))?;
            let image = client.import_image(&path.to_string_lossy(), &name).await?;
            let text = format!(
                "{} {}",
                image["reference"].as_str().unwrap_or(&name),
                image["digest"].as_str().unwrap_or("")
            );
            show(json, &image, &text)
        }
        ImageCommand::List => {
            let images = client.list_images().await?;
            if json {
                return print_json(&images);
            }
            let field =
                |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
            let rows = images
                .iter()
                .map(|i| {
                    vec![
                        field(i, "reference"),
                        field(i, "digest"),
                        i["size"].to_string(),
                        field(i, "created_at"),
                    ]
                })
                .collect();
            print_table(&["REFERENCE", "DIGEST", "SIZE", "IMPORTED"], rows)
        }
        ImageCommand::Pull {
            reference,
            username,
            password,
        } => {
            let auth = username
                .zip(password)
                .map(|(username, password)| RegistryAuth { username, password });
            let image = if json {
                client.pull_image(&reference, auth.as_ref()).await?
            } else {
                let stream = client.pull_image_stream(&reference, auth.as_ref()).await?;
                super::progress::show_pull(stream).await?
            };
            let text = format!(
                "{} {}",
                image["reference"].as_str().unwrap_or(&reference),
                image["digest"].as_str().unwrap_or("")
            );
            show(json, &image, &text)
        }
        ImageCommand::Rm { reference } => {
            let image = client.remove_image(&reference).await?;
            let name = image["reference"].as_str().unwrap_or(&reference).to_owned();
            done(json, format!("removed image {name}"))
        }
        ImageCommand::Prune => {
            let report = client.prune_images().await?;
            let text = format!(
                "removed {} layers and {} blobs ({} bytes)",
                report["layers"], report["blobs"], report["bytes"]
            );
            show(json, &report, &text)
        }
    }
}
