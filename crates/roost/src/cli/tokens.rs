//! `roost tokens`: API tokens narrower than the one the CLI uses, made by
//! the server (`create`, listed and revocable) or offline (`attenuate`).

use super::output::{print_json, print_table, show};
use anyhow::{Context, Result};
use clap::Subcommand;
use roost_client::Client;
use roost_types::TokenCaveats;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token derived from the one in use, limited by the options; print its id and the token.
    Create {
        #[command(flatten)]
        caveats: CaveatArgs,
    },
    /// List the tokens this roost issued: ids and caveats, never the tokens.
    List,
    /// Revoke a token by id, and every token derived from it.
    Revoke { id: String },
    /// Derive a narrower token from TOKEN here, without asking the server.
    Attenuate {
        token: String,
        #[command(flatten)]
        caveats: CaveatArgs,
    },
}

/// The limits a new token gets; each one given narrows it.
#[derive(Debug, clap::Args)]
pub struct CaveatArgs {
    /// An app it reaches (repeatable); without --app or --app-prefix, the parent's apps.
    #[arg(long = "app", conflicts_with = "app_prefix")]
    apps: Vec<String>,
    /// It reaches the apps whose names start with this.
    #[arg(long)]
    app_prefix: Option<String>,
    /// A machine id it reaches (repeatable).
    #[arg(long = "machine")]
    machines: Vec<String>,
    /// The rights it carries, comma-separated (read, lifecycle, exec, files, volumes, storage,
    /// secrets:write, images, egress, checkpoints, tokens).
    #[arg(long, value_delimiter = ',')]
    rights: Vec<String>,
    /// How long it is valid: a number and a unit, s, m, h or d (`90m`, `1h`, `7d`).
    #[arg(long, value_parser = parse_duration)]
    expires: Option<Duration>,
}

impl CaveatArgs {
    fn caveats(self) -> Result<TokenCaveats> {
        let expires_at = match self.expires {
            Some(after) => Some(
                chrono::Utc::now()
                    + chrono::Duration::from_std(after).context("--expires is too far away")?,
            ),
            None => None,
        };
        let some = |list: Vec<String>| (!list.is_empty()).then_some(list);
        Ok(TokenCaveats {
            apps: some(self.apps),
            app_prefix: self.app_prefix,
            machines: some(self.machines),
            rights: some(self.rights),
            expires_at,
        })
    }
}

/// `client` is called only when the API is needed, so `attenuate` works
/// without a server.
pub async fn run(
    cmd: TokensCommand,
    client: impl FnOnce() -> Result<Client>,
    json: bool,
) -> Result<()> {
    match cmd {
        TokensCommand::Create { caveats } => {
            let created = client()?.create_token(&caveats.caveats()?).await?;
            let text = format!("id: {}\ntoken: {}", created.id, created.token);
            show(json, &created, &text)
        }
        TokensCommand::List => {
            let listing = client()?.list_tokens().await?;
            if json {
                return print_json(&listing);
            }
            print_table(
                &["ID", "CAVEATS", "CREATED"],
                listing
                    .tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            serde_json::to_string(&t.caveats).unwrap_or_default(),
                            t.created_at.to_rfc3339(),
                        ]
                    })
                    .collect(),
            )
        }
        TokensCommand::Revoke { id } => {
            let answer = client()?.revoke_token(&id).await?;
            show(
                json,
                &answer,
                &format!("revoked token {id} and every token derived from it"),
            )
        }
        TokensCommand::Attenuate { token, caveats } => {
            let narrower = roost_tokens::Caveats::from_wire(&caveats.caveats()?)?;
            let derived = roost_tokens::attenuate(&token, &narrower)?;
            show(json, &serde_json::json!({ "token": derived }), &derived)
        }
    }
}

/// `90s`, `15m`, `1h`, `7d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{text}' has no unit: add s, m, h or d"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' does not start with a number"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("unknown unit '{unit}': use s, m, h or d")),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("'{text}' is too long"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_take_a_number_and_a_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["1", "h", "1w", "-1h", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
