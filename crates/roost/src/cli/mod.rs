//! The command line: one module per command family, each with its
//! subcommands (a clap `Subcommand` enum) and a `run` that calls the API
//! through [`roost_client::Client`]. [`Command`] is the table of families;
//! `roost up` itself is the daemon module. A new family gets a module here
//! and a line in [`Command`] and [`run`]; a new subcommand goes into its
//! family's module.

mod apps;
mod egress;
mod hints;
mod images;
mod machines;
mod output;
mod progress;
mod secrets;
mod storage;
mod tokenizer;
mod tokens;
mod volumes;

pub use hints::hint;
pub use output::is_stdout_closed;

use crate::daemon::{up, UpArgs};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use roost_client::Client;

#[derive(Debug, Parser)]
#[command(
    name = "roost",
    version,
    about = "A self-hosted machines platform for robots"
)]
pub struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// roost API base URL.
    #[arg(
        long,
        global = true,
        env = "ROOST_API_URL",
        default_value = "http://127.0.0.1:4280"
    )]
    api_url: String,
    /// API token; defaults to the admin token in the local data dir.
    #[arg(long, global = true, env = "ROOST_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform (API server and orchestrator) in this process.
    Up(UpArgs),
    /// Manage apps.
    #[command(subcommand)]
    Apps(apps::AppsCommand),
    /// Manage local images.
    #[command(subcommand)]
    Image(images::ImageCommand),
    /// Manage machines.
    #[command(subcommand, alias = "machines")]
    Machine(machines::MachineCommand),
    /// Manage volumes: persistent filesystems with snapshots and forks.
    #[command(subcommand, alias = "volume")]
    Volumes(volumes::VolumesCommand),
    /// Manage object storage: S3 buckets owned by apps, with their key pairs.
    #[command(subcommand)]
    Storage(storage::StorageCommand),
    /// Manage app secrets: environment variables of the app's machines, encrypted at rest.
    #[command(subcommand, alias = "secret")]
    Secrets(secrets::SecretsCommand),
    /// The tokenizer: print its seal key, seal secrets for it.
    #[command(subcommand)]
    Tokenizer(tokenizer::TokenizerCommand),
    /// Manage API tokens: narrower tokens for robots, made by the server or offline.
    #[command(subcommand, alias = "token")]
    Tokens(tokens::TokensCommand),
    /// Manage an app's egress policy: where its machines may connect, and the audit log.
    #[command(subcommand)]
    Egress(egress::EgressCommand),
    /// Serve roost's MCP tools on stdin/stdout for a local agent, relayed to
    /// the API's /mcp endpoint (uses --api-url and --api-token).
    Mcp,
    /// (internal) Write a machine's output, read from stdin, into its
    /// bounded log: `roost up` runs one per running machine.
    #[command(hide = true)]
    LogRelay {
        #[arg(num_args = 0.., allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// The program and arguments `roost up` runs as machines' log relays: this
/// binary (by `/proc/self/exe`, which stays valid if the file is replaced)
/// with the hidden `log-relay` command.
pub fn log_relay(max_bytes: u64) -> roost_runtime::LogRelay {
    roost_runtime::LogRelay::new("/proc/self/exe", ["log-relay"], max_bytes)
}

impl Cli {
    /// The arguments of `log-relay`, which `main` runs without an async
    /// runtime and its threads (one relay runs per running machine).
    pub fn log_relay_args(&mut self) -> Option<Vec<std::ffi::OsString>> {
        match &mut self.command {
            Command::LogRelay { args } => Some(std::mem::take(args)),
            _ => None,
        }
    }
}

// The `--app` option of commands about one app's resources (a doc comment
// here would become the help text of every subcommand that has none).
#[derive(Debug, clap::Args)]
struct AppArg {
    /// The app the machine belongs to.
    #[arg(short, long, env = "ROOST_APP")]
    app: String,
}

/// Runs the command `cli` names.
pub async fn run(cli: Cli) -> Result<()> {
    let Cli {
        json,
        api_url,
        api_token,
        command,
    } = cli;
    // The API is reached only by commands that need it, so `tokenizer seal
    // --key` works without a token.
    let api = || -> Result<Client> { Ok(Client::new(&api_url, &token(api_token.as_deref())?)) };
    match command {
        Command::Up(args) => {
            init_tracing("info");
            up(args).await
        }
        Command::Apps(cmd) => apps::run(&api()?, cmd, json).await,
        Command::Image(cmd) => images::run(&api()?, cmd, json).await,
        Command::Machine(cmd) => machines::run(&api()?, cmd, json).await,
        Command::Volumes(cmd) => volumes::run(&api()?, cmd, json).await,
        Command::Storage(cmd) => storage::run(&api()?, cmd, json).await,
        Command::Secrets(cmd) => secrets::run(&api()?, cmd, json).await,
        Command::Tokenizer(cmd) => tokenizer::run(&cmd, api, json).await,
        Command::Egress(cmd) => egress::run(&api()?, cmd, json).await,
        Command::Tokens(cmd) => tokens::run(cmd, api, json).await,
        Command::Mcp => {
            // stdout carries the protocol; only warnings go to stderr.
            init_tracing("warn");
            let token = token(api_token.as_deref())?;
            Ok(roost_mcp::serve_stdio(&api_url, &token).await?)
        }
        Command::LogRelay { .. } => {
            anyhow::bail!("log-relay runs before the async runtime starts (see main)")
        }
    }
}

/// The API token given, or else the admin token in the local data dir.
fn token(given: Option<&str>) -> Result<String> {
    if let Some(token) = given {
        return Ok(token.to_string());
    }
    let data_dir = std::env::var("ROOST_DATA_DIR").unwrap_or_else(|_| "/var/lib/roost".into());
    let path = std::path::Path::new(&data_dir).join("admin-token");
    let token = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no API token: set ROOST_API_TOKEN or make {} readable",
            path.display()
        )
    })?;
    Ok(token.trim().to_string())
}

/// Logs go to stderr at `RUST_LOG` or `default_level`.
fn init_tracing(default_level: &str) {
    use tracing_subscriber::util::SubscriberInitExt;
    let wanted = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    subscriber(wanted).init();
}

/// The daemon's and the CLI's subscriber: `wanted` (RUST_LOG's filter) and
/// [`without_mcp_payloads`] as one filter. Two filters stacked with
/// `with_filter` report only the outer one's level to `tracing`: that was
/// the rmcp filter's TRACE, which turned on every debug and trace callsite
/// (s3s makes and enters a debug span per request, hot on small S3 GETs)
/// only for the inner filter to drop them. One filter reports the stricter
/// level, so what RUST_LOG leaves out costs nothing.
fn subscriber(wanted: tracing_subscriber::EnvFilter) -> impl tracing::Subscriber + Send + Sync {
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(wanted.and(without_mcp_payloads())),
    )
}

/// rmcp logs every request and response it handles, tool arguments and
/// results included (`set_secrets`' values, exec output), at debug and
/// trace: nothing of rmcp's below info is let through, whatever RUST_LOG
/// asks for.
fn without_mcp_payloads() -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::LevelFilter;
    tracing_subscriber::filter::Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("rmcp", LevelFilter::INFO)
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    fn without_help(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for sub in command.get_subcommands() {
            let path = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() {
                missing.push(path.clone());
            }
            without_help(sub, &path, missing);
        }
    }

    #[test]
    fn security_rmcp_payload_logs_are_filtered_at_any_log_level() {
        use tracing::Level;
        let filter = super::without_mcp_payloads();
        assert!(!filter.would_enable("rmcp::service", &Level::DEBUG));
        assert!(!filter.would_enable(
            "rmcp::transport::streamable_http_server::tower",
            &Level::TRACE
        ));
        assert!(filter.would_enable("rmcp::service", &Level::INFO));
        assert!(filter.would_enable("roost_machines", &Level::TRACE));
    }

    #[test]
    fn levels_the_filter_leaves_out_are_off_for_tracing() {
        use tracing::level_filters::LevelFilter;
        use tracing::Subscriber as _;
        let info = tracing_subscriber::EnvFilter::new("info");
        assert_eq!(
            super::subscriber(info).max_level_hint(),
            Some(LevelFilter::INFO)
        );
    }

    #[test]
    fn every_subcommand_has_a_help_line() {
        let mut missing = Vec::new();
        without_help(&Cli::command(), "roost", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
