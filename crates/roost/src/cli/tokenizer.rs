//! `roost tokenizer`: the seal key, and sealing secrets on this machine.

use super::output::show;
use anyhow::{Context, Result};
use clap::Subcommand;
use roost_client::Client;
use std::io::Read;

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

/// `client` is called only when the API is needed, so `seal --key` works
/// without a token.
pub async fn run(
    cmd: &TokenizerCommand,
    client: impl FnOnce() -> Result<Client>,
    json: bool,
) -> Result<()> {
    match cmd {
        TokenizerCommand::PublicKey => {
            let key = client()?.tokenizer_public_key().await?;
            show(json, &serde_json::json!({ "public_key": key }), &key)
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
            show(json, &serde_json::json!({ "token": token }), &token)
        }
    }
}
