//! `roost secrets`: app secrets, injected as environment variables.

use super::output::{print_json, print_table};
use super::AppArg;
use anyhow::{Context, Result};
use clap::Subcommand;
use roost_client::Client;
use roost_types::AppSecrets;
use std::collections::BTreeMap;
use std::io::Read;

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Set secrets, `NAME=VALUE` arguments or, with none (or `-`), one
    /// `NAME=VALUE` per line on stdin. Machines get them at their next start.
    Set {
        #[command(flatten)]
        app: AppArg,
        #[arg(value_name = "NAME=VALUE")]
        pairs: Vec<String>,
    },
    /// Names and digests of the app's secrets (never values).
    List {
        #[command(flatten)]
        app: AppArg,
    },
    /// Remove secrets by name.
    Unset {
        #[command(flatten)]
        app: AppArg,
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub async fn run(client: &Client, cmd: SecretsCommand, json: bool) -> Result<()> {
    let listing = match cmd {
        SecretsCommand::Set { app, pairs } => {
            let pairs = if pairs.is_empty() || pairs == ["-"] {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read NAME=VALUE lines from stdin")?;
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(String::from)
                    .collect()
            } else {
                pairs
            };
            let mut values = BTreeMap::new();
            for pair in pairs {
                let Some((name, value)) = pair.split_once('=') else {
                    anyhow::bail!(
                        "expected NAME=VALUE pairs; one has no '=' (not shown: it may be a secret)"
                    );
                };
                values.insert(name.trim().to_string(), Some(value.to_string()));
            }
            client.update_secrets(&app.app, values).await?
        }
        SecretsCommand::List { app } => client.list_secrets(&app.app).await?,
        SecretsCommand::Unset { app, names } => {
            let values = names.into_iter().map(|name| (name, None)).collect();
            client.update_secrets(&app.app, values).await?
        }
    };
    print_listing(&listing, json)
}

fn print_listing(listing: &AppSecrets, json: bool) -> Result<()> {
    if json {
        return print_json(listing);
    }
    print_table(
        &["NAME", "DIGEST", "UPDATED"],
        listing
            .secrets
            .iter()
            .map(|s| vec![s.name.clone(), s.digest.clone(), s.updated_at.clone()])
            .collect(),
    )
}
