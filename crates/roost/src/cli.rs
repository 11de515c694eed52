//! Command-line parsing and the client-side commands.

use crate::output::{print_json, print_table};
use crate::up::{up, UpArgs};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use roost_client::Client;
use roost_types::{
    CreateMachineRequest, ExecRequest, MachineConfig, MachineGuest, MachineInit, RegistryAuth,
    StopRequest,
};
use std::io::Write;

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
    Apps(AppsCommand),
    /// Manage local images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage machines.
    #[command(subcommand, alias = "machines")]
    Machine(MachineCommand),
    /// Manage volumes: persistent filesystems with snapshots and forks.
    #[command(subcommand, alias = "volume")]
    Volumes(crate::volumes::VolumesCommand),
    /// Manage object storage: S3 buckets owned by apps, with their key pairs.
    #[command(subcommand)]
    Storage(crate::storage::StorageCommand),
    /// Manage app secrets: environment variables of the app's machines, encrypted at rest.
    #[command(subcommand, alias = "secret")]
    Secrets(crate::secrets::SecretsCommand),
    /// The tokenizer: print its seal key, seal secrets for it.
    #[command(subcommand)]
    Tokenizer(crate::secrets::TokenizerCommand),
    /// Serve roost's MCP tools on stdin/stdout for a local agent, relayed to
    /// the API's /mcp endpoint (uses --api-url and --api-token).
    Mcp,
}

#[derive(Debug, Subcommand)]
enum AppsCommand {
    Create {
        name: String,
    },
    List,
    /// Destroy an app: its machines, and its buckets with their objects.
    Destroy {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Import an OCI layout directory, oci-archive or docker-save tarball.
    Import {
        path: std::path::PathBuf,
        /// Name to store it under, `repo:tag`.
        #[arg(long)]
        name: String,
    },
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
    Rm {
        reference: String,
    },
    /// Delete layers and blobs no image or machine references.
    Prune,
}

#[derive(Debug, clap::Args)]
pub(crate) struct AppArg {
    /// The app the machine belongs to.
    #[arg(short, long, env = "ROOST_APP")]
    pub(crate) app: String,
}

#[derive(Debug, Subcommand)]
enum MachineCommand {
    /// Create and start a machine; prints its id.
    Run {
        image: String,
        #[command(flatten)]
        app: AppArg,
        #[arg(long)]
        name: Option<String>,
        /// Environment variable `KEY=VALUE` (repeatable).
        #[arg(short, long = "env")]
        env: Vec<String>,
        #[arg(long)]
        cpus: Option<i64>,
        #[arg(long)]
        memory: Option<i64>,
        /// OCI runtime for this machine (`crun` or `runc`).
        #[arg(long)]
        runtime: Option<String>,
        /// Create the machine without starting it.
        #[arg(long)]
        skip_launch: bool,
        /// Mount a volume, `VOLUME_ID:/PATH` (repeatable).
        #[arg(long = "volume", value_name = "VOLUME_ID:/PATH")]
        volumes: Vec<String>,
        /// Command to run instead of the image's.
        #[arg(last = true)]
        cmd: Vec<String>,
    },
    List {
        #[command(flatten)]
        app: AppArg,
    },
    Status {
        id: String,
        #[command(flatten)]
        app: AppArg,
    },
    Start {
        id: String,
        #[command(flatten)]
        app: AppArg,
    },
    Stop {
        id: String,
        #[command(flatten)]
        app: AppArg,
        #[arg(long)]
        signal: Option<String>,
        /// Seconds (or a duration like 30s) before SIGKILL.
        #[arg(long)]
        timeout: Option<String>,
    },
    Restart {
        id: String,
        #[command(flatten)]
        app: AppArg,
    },
    Destroy {
        id: String,
        #[command(flatten)]
        app: AppArg,
        /// Destroy even if it is running.
        #[arg(long)]
        force: bool,
    },
    /// Run a command inside a started machine.
    Exec {
        id: String,
        #[command(flatten)]
        app: AppArg,
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    Logs {
        id: String,
        #[command(flatten)]
        app: AppArg,
        /// Keep streaming new output.
        #[arg(short, long)]
        follow: bool,
    },
    /// Wait until the machine reaches a state.
    Wait {
        id: String,
        #[command(flatten)]
        app: AppArg,
        #[arg(long, default_value = "started")]
        state: String,
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

fn client(cli: &Cli) -> Result<Client> {
    Ok(Client::new(&cli.api_url, &api_token(cli)?))
}

fn api_token(cli: &Cli) -> Result<String> {
    Ok(match &cli.api_token {
        Some(token) => token.clone(),
        None => {
            let data_dir =
                std::env::var("ROOST_DATA_DIR").unwrap_or_else(|_| "/var/lib/roost".into());
            let path = std::path::Path::new(&data_dir).join("admin-token");
            std::fs::read_to_string(&path)
                .with_context(|| {
                    format!(
                        "no API token: set ROOST_API_TOKEN or make {} readable",
                        path.display()
                    )
                })?
                .trim()
                .to_string()
        }
    })
}

pub async fn run(cli: Cli) -> Result<()> {
    if let Command::Up(args) = cli.command {
        init_tracing("info");
        return up(args).await;
    }
    if let Command::Mcp = cli.command {
        // stdout carries the protocol; only warnings go to stderr.
        init_tracing("warn");
        return Ok(roost_mcp::serve_stdio(&cli.api_url, &api_token(&cli)?).await?);
    }
    if let Command::Tokenizer(cmd) = &cli.command {
        return crate::secrets::tokenizer(cmd, || client(&cli), cli.json).await;
    }
    let client = client(&cli)?;
    let json = cli.json;
    match cli.command {
        Command::Up(_) | Command::Mcp | Command::Tokenizer(_) => unreachable!("handled above"),
        Command::Apps(cmd) => apps(&client, cmd, json).await,
        Command::Image(cmd) => image(&client, cmd, json).await,
        Command::Machine(cmd) => machine(&client, cmd, json).await,
        Command::Volumes(cmd) => crate::volumes::run(&client, cmd, json).await,
        Command::Secrets(cmd) => crate::secrets::secrets(&client, cmd, json).await,
        Command::Storage(cmd) => crate::storage::run(&client, cmd, json).await,
    }
}

/// Logs go to stderr at `RUST_LOG` or `default_level`.
fn init_tracing(default_level: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
}

async fn apps(client: &Client, cmd: AppsCommand, json: bool) -> Result<()> {
    match cmd {
        AppsCommand::Create { name } => {
            let app = client.create_app(&name).await?;
            if json {
                print_json(&app)
            } else {
                println!("{}", app.name);
                Ok(())
            }
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
            print_table(&["NAME", "MACHINES"], rows);
            Ok(())
        }
        AppsCommand::Destroy { name } => {
            client.delete_app(&name).await?;
            if json {
                print_json(&serde_json::json!({"ok": true}))
            } else {
                println!("destroyed app {name}");
                Ok(())
            }
        }
    }
}

async fn image(client: &Client, cmd: ImageCommand, json: bool) -> Result<()> {
    match cmd {
        ImageCommand::Import { path, name } => {
            let path = std::fs::canonicalize(&path)
                .with_context(|| format!("cannot find {}", path.display()))?;
            let image = client.import_image(&path.to_string_lossy(), &name).await?;
            if json {
                print_json(&image)
            } else {
                println!(
                    "{} {}",
                    image["reference"].as_str().unwrap_or(&name),
                    image["digest"].as_str().unwrap_or("")
                );
                Ok(())
            }
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
            print_table(&["REFERENCE", "DIGEST", "SIZE", "IMPORTED"], rows);
            Ok(())
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
                crate::progress::show_pull(stream).await?
            };
            if json {
                return print_json(&image);
            }
            println!(
                "{} {}",
                image["reference"].as_str().unwrap_or(&reference),
                image["digest"].as_str().unwrap_or("")
            );
            Ok(())
        }
        ImageCommand::Rm { reference } => {
            let image = client.remove_image(&reference).await?;
            let name = image["reference"].as_str().unwrap_or(&reference).to_owned();
            done(json, format!("removed image {name}"))
        }
        ImageCommand::Prune => {
            let report = client.prune_images().await?;
            if json {
                return print_json(&report);
            }
            println!(
                "removed {} layers and {} blobs ({} bytes)",
                report["layers"], report["blobs"], report["bytes"]
            );
            Ok(())
        }
    }
}

fn parse_env(pairs: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--env {pair:?} must look like KEY=VALUE"))
        })
        .collect()
}

fn machine_rows(machines: &[roost_types::Machine]) -> Vec<Vec<String>> {
    machines
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                m.name.clone(),
                m.state.to_string(),
                m.config.image.clone(),
                m.region.clone(),
                m.updated_at.clone(),
            ]
        })
        .collect()
}

const MACHINE_HEADER: [&str; 6] = ["ID", "NAME", "STATE", "IMAGE", "REGION", "UPDATED"];

fn done(json: bool, text: String) -> Result<()> {
    if json {
        print_json(&serde_json::json!({"ok": true}))
    } else {
        println!("{text}");
        Ok(())
    }
}

async fn machine(client: &Client, cmd: MachineCommand, json: bool) -> Result<()> {
    match cmd {
        MachineCommand::Run {
            image,
            app,
            name,
            env,
            cpus,
            memory,
            runtime,
            skip_launch,
            volumes,
            cmd,
        } => {
            let guest =
                (cpus.is_some() || memory.is_some() || runtime.is_some()).then(|| MachineGuest {
                    cpus,
                    memory_mb: memory,
                    runtime,
                    ..Default::default()
                });
            let init = (!cmd.is_empty()).then(|| MachineInit {
                cmd,
                ..Default::default()
            });
            let req = CreateMachineRequest {
                config: MachineConfig {
                    image,
                    env: parse_env(&env)?,
                    guest,
                    init,
                    mounts: crate::volumes::parse_mounts(&volumes)?,
                    ..Default::default()
                },
                name,
                skip_launch,
                ..Default::default()
            };
            let machine = client.create_machine(&app.app, &req).await?;
            if json {
                print_json(&machine)
            } else {
                println!("{}", machine.id);
                Ok(())
            }
        }
        MachineCommand::List { app } => {
            let machines = client.list_machines(&app.app).await?;
            if json {
                return print_json(&machines);
            }
            print_table(&MACHINE_HEADER, machine_rows(&machines));
            Ok(())
        }
        MachineCommand::Status { id, app } => {
            let machine = client.get_machine(&app.app, &id).await?;
            if json {
                return print_json(&machine);
            }
            print_table(
                &MACHINE_HEADER,
                machine_rows(std::slice::from_ref(&machine)),
            );
            println!();
            let rows = machine
                .events
                .iter()
                .take(10)
                .map(|e| {
                    vec![
                        e.timestamp.to_string(),
                        e.kind.clone(),
                        e.status.clone(),
                        e.source.clone(),
                    ]
                })
                .collect();
            print_table(&["TIMESTAMP", "EVENT", "STATUS", "SOURCE"], rows);
            Ok(())
        }
        MachineCommand::Start { id, app } => {
            let body = client.start_machine(&app.app, &id).await?;
            if json {
                print_json(&body)
            } else {
                println!("started {id}");
                Ok(())
            }
        }
        MachineCommand::Stop {
            id,
            app,
            signal,
            timeout,
        } => {
            client
                .stop_machine(&app.app, &id, &StopRequest { signal, timeout })
                .await?;
            done(json, format!("stopped {id}"))
        }
        MachineCommand::Restart { id, app } => {
            client.restart_machine(&app.app, &id).await?;
            done(json, format!("restarted {id}"))
        }
        MachineCommand::Destroy { id, app, force } => {
            client.destroy_machine(&app.app, &id, force).await?;
            done(json, format!("destroyed {id}"))
        }
        MachineCommand::Exec {
            id,
            app,
            timeout,
            cmd,
        } => {
            let req = ExecRequest {
                command: cmd,
                timeout: Some(timeout),
                ..Default::default()
            };
            let out = client.exec(&app.app, &id, &req).await?;
            if json {
                return print_json(&out);
            }
            print!("{}", out.stdout);
            eprint!("{}", out.stderr);
            if out.exit_code != 0 {
                anyhow::bail!("command exited with code {}", out.exit_code);
            }
            Ok(())
        }
        MachineCommand::Logs { id, app, follow } => {
            let response = client.logs(&app.app, &id, follow).await?;
            let mut stream = response.bytes_stream();
            let mut stdout = std::io::stdout();
            while let Some(chunk) = stream.next().await {
                stdout.write_all(&chunk.context("log stream broke")?)?;
                stdout.flush()?;
            }
            Ok(())
        }
        MachineCommand::Wait {
            id,
            app,
            state,
            timeout,
        } => {
            client.wait(&app.app, &id, &state, timeout).await?;
            done(json, format!("{id} is {state}"))
        }
    }
}
