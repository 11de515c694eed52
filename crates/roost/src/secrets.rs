//! `roost secrets` (app secrets, injected as environment variables) and
//! `roost tokenizer` (the seal key, and sealing secrets on this machine).

use crate::cli::AppArg;
use crate::output::{print_json, print_table};
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

#[derive(Debug, Subcommand)]
pub enum TokenizerCommand {
    /// Print the tokenizer's seal key (hex X25519 public key).
    PublicKey,
    /// Seal a secret (superfly/tokenizer JSON) from FILE or stdin and print
    /// the token. Sealing happens here: the plaintext never leaves this machine.
    Seal {
        /// File with the secret JSON; `-` or nothing reads stdin.
        file: Option<std::path::PathBuf>,
        /// Seal key to use instead of asking the API for it.
        #[arg(long, value_name = "HEX")]
        key: Option<String>,
    },
}

pub async fn secrets(client: &Client, cmd: SecretsCommand, json: bool) -> Result<()> {
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
    );
    Ok(())
}

/// `client` is called only when the API is needed, so `seal --key` works
/// without a token.
pub async fn tokenizer(
    cmd: &TokenizerCommand,
    client: impl FnOnce() -> Result<Client>,
    json: bool,
) -> Result<()> {
    match cmd {
        TokenizerCommand::PublicKey => {
            let key = client()?.tokenizer_public_key().await?;
            if json {
                print_json(&serde_json::json!({ "public_key": key }))
            } else {
                println!("{key}");
                Ok(())
            }
        }
        TokenizerCommand::Seal { file, key } => {
            let plaintext = zeroize::Zeroizing::new(match file.as_deref() {
                Some(path) if path != std::path::Path::new("-") => std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                _ => {
                    let mut bytes = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut bytes)
                        .context("cannot read the secret JSON from stdin")?;
                    bytes
                }
            });
            roost_tokenizer::Secret::from_json(&plaintext)
                .context("the secret would be refused by the tokenizer")?;
            let key = match key {
                Some(key) => key.clone(),
                None => client()?.tokenizer_public_key().await?,
            };
            let seal_key: roost_tokenizer::SealKey = key.parse()?;
            let token = seal_key.seal(&plaintext)?;
            if json {
                print_json(&serde_json::json!({ "token": token }))
            } else {
                println!("{token}");
                Ok(())
            }
        }
    }
}
