//! `roost machine`: the lifecycle of machines, exec, logs and waiting.

use super::output::{done, print_json, print_line, print_table, show, write_stdout};
use super::AppArg;
use anyhow::{Context, Result};
use clap::Subcommand;
use futures_util::StreamExt;
use roost_client::Client;
use roost_types::{
    CreateMachineRequest, ExecRequest, MachineConfig, MachineGuest, MachineInit, StopRequest,
};

#[derive(Debug, Subcommand)]
pub enum MachineCommand {
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
    /// List the app's machines.
    List {
        #[command(flatten)]
        app: AppArg,
    },
    /// Show a machine and its latest events.
    Status {
        id: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Start a created or stopped machine.
    Start {
        id: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Stop a machine: the signal, then SIGKILL after the timeout.
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
    /// Stop a machine and start it again.
    Restart {
        id: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Destroy a machine and its filesystem.
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
    /// Print a machine's output (stdout and stderr).
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

pub async fn run(client: &Client, cmd: MachineCommand, json: bool) -> Result<()> {
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
                    mounts: super::volumes::parse_mounts(&volumes)?,
                    ..Default::default()
                },
                name,
                skip_launch,
                ..Default::default()
            };
            let machine = client.create_machine(&app.app, &req).await?;
            show(json, &machine, &machine.id)
        }
        MachineCommand::List { app } => {
            let machines = client.list_machines(&app.app).await?;
            if json {
                return print_json(&machines);
            }
            print_table(&MACHINE_HEADER, machine_rows(&machines))
        }
        MachineCommand::Status { id, app } => {
            let machine = client.get_machine(&app.app, &id).await?;
            if json {
                return print_json(&machine);
            }
            print_table(
                &MACHINE_HEADER,
                machine_rows(std::slice::from_ref(&machine)),
            )?;
            print_line("")?;
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
            print_table(&["TIMESTAMP", "EVENT", "STATUS", "SOURCE"], rows)
        }
        MachineCommand::Start { id, app } => {
            let body = client.start_machine(&app.app, &id).await?;
            show(json, &body, &format!("started {id}"))
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
            write_stdout(out.stdout.as_bytes())?;
            eprint!("{}", out.stderr);
            if out.exit_code != 0 {
                anyhow::bail!("command exited with code {}", out.exit_code);
            }
            Ok(())
        }
        MachineCommand::Logs { id, app, follow } => {
            let response = client.logs(&app.app, &id, follow).await?;
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                write_stdout(&chunk.context("log stream broke")?)?;
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
