//! Machine tools: the lifecycle of machines (run, start, stop, restart,
//! destroy, wait) and how a machine is summarized for a robot.

use super::reply::{count, reply, reply_on, text, Subject};
use super::{AppArgs, Tools};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use roost_machines::MachineError;
use roost_types::{
    CreateMachineRequest, Machine, MachineConfig, MachineGuest, MachineInit, MachineMount,
    MachineState, StopRequest,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// A machine of an app.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MachineArgs {
    /// App the machine belongs to.
    app: String,
    /// Machine id: 14 lowercase hex characters, as returned by run_machine or list_machines.
    machine_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RunMachineArgs {
    /// App to create the machine in (see list_apps / create_app).
    app: String,
    /// Image reference from roost's image store, e.g. "busybox:latest" (see list_images).
    image: String,
    /// Command (argv) to run as the machine's main process instead of the image's default.
    /// The machine stops when it exits, so use a long-running command such as
    /// ["sleep", "infinity"] for a machine you want to exec into.
    #[serde(default)]
    command: Vec<String>,
    /// Environment variables for the main process and for exec, e.g. {"PORT": "8080"}.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Human-readable machine name. Default: "<app>-<first 6 id characters>".
    name: Option<String>,
    /// CPU share, in CPUs (1 to the host's CPU count). Default 1.
    cpus: Option<i64>,
    /// Memory limit in MiB (32 to the host's memory). Default 256.
    memory_mb: Option<i64>,
    /// Start the machine after creating it. Default true; false only creates it (state
    /// "created"), to be started later with start_machine.
    start: Option<bool>,
    /// Volumes to mount, e.g. [{"volume": "vol_...", "path": "/data"}] (see create_volume).
    /// Files under the path outlive the machine. A volume serves one machine at a time.
    /// read_file, write_file and list_dir reach files on volumes too.
    #[serde(default)]
    mounts: Vec<MountArgs>,
}

/// A volume mounted into a machine.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MountArgs {
    /// Volume id ("vol_...") of a volume of the same app, in state "created".
    volume: String,
    /// Absolute path inside the machine, e.g. "/data"; not "/" nor inside a system directory
    /// (/etc, /usr, /proc, /sys, /dev, ...).
    path: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StopMachineArgs {
    /// App the machine belongs to.
    app: String,
    /// Machine id (14 lowercase hex characters).
    machine_id: String,
    /// Signal to stop the main process with, e.g. "SIGTERM" or "SIGINT". Default: the
    /// machine's stop_config signal, else SIGTERM.
    signal: Option<String>,
    /// Seconds to wait after the signal before killing the process. Default 5.
    timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DestroyMachineArgs {
    /// App the machine belongs to.
    app: String,
    /// Machine id (14 lowercase hex characters).
    machine_id: String,
    /// Destroy even if the machine is running (it is killed). Default false: a running
    /// machine must be stopped first.
    #[serde(default)]
    force: bool,
}

/// States a machine can be waited for.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum WaitState {
    Started,
    Stopped,
    Suspended,
    Destroyed,
}

impl From<WaitState> for MachineState {
    fn from(state: WaitState) -> MachineState {
        match state {
            WaitState::Started => MachineState::Started,
            WaitState::Stopped => MachineState::Stopped,
            WaitState::Suspended => MachineState::Suspended,
            WaitState::Destroyed => MachineState::Destroyed,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WaitMachineArgs {
    /// App the machine belongs to.
    app: String,
    /// Machine id (14 lowercase hex characters).
    machine_id: String,
    /// State to wait for.
    state: WaitState,
    /// Seconds to wait at most, 1 to 300. Default 60.
    timeout_seconds: Option<u64>,
}

/// The fields of a machine a robot needs to act on it.
#[derive(Debug, Serialize)]
struct MachineSummary {
    id: String,
    name: String,
    state: MachineState,
    image: String,
    region: String,
    instance_id: String,
    created_at: String,
    updated_at: String,
}

impl From<&Machine> for MachineSummary {
    fn from(m: &Machine) -> MachineSummary {
        MachineSummary {
            id: m.id.clone(),
            name: m.name.clone(),
            state: m.state,
            image: m.config.image.clone(),
            region: m.region.clone(),
            instance_id: m.instance_id.clone(),
            created_at: m.created_at.clone(),
            updated_at: m.updated_at.clone(),
        }
    }
}

impl Tools {
    /// A machine's summary after an operation on it.
    fn summary(&self, app: &str, id: &str) -> Result<MachineSummary, MachineError> {
        Ok(MachineSummary::from(&self.machines.get_machine(app, id)?))
    }
}

fn state_line(m: &MachineSummary) -> String {
    format!("machine {} ({}) is {}", m.id, m.name, m.state)
}

#[tool_router(router = machines_router, vis = "pub(super)")]
impl Tools {
    /// Create a machine from an image and start it; returns once it is started (or created,
    /// with start=false). Creating does the slow work (preparing the image), so reuse machines:
    /// stop and start them instead of creating new ones. Returns the machine summary {"id",
    /// "name", "state", "image", "region", "instance_id", "created_at", "updated_at"}; keep
    /// "id" as machine_id for the other tools.
    #[tool]
    async fn run_machine(&self, Parameters(args): Parameters<RunMachineArgs>) -> CallToolResult {
        let guest = (args.cpus.is_some() || args.memory_mb.is_some()).then(|| MachineGuest {
            cpus: args.cpus,
            memory_mb: args.memory_mb,
            ..Default::default()
        });
        let init = (!args.command.is_empty()).then(|| MachineInit {
            cmd: args.command,
            ..Default::default()
        });
        let request = CreateMachineRequest {
            config: MachineConfig {
                image: args.image,
                env: args.env,
                guest,
                init,
                mounts: args
                    .mounts
                    .into_iter()
                    .map(|m| MachineMount {
                        volume: m.volume,
                        path: m.path,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
            name: args.name,
            skip_launch: !args.start.unwrap_or(true),
            ..Default::default()
        };
        let result = self
            .machines
            .create_machine(&args.app, request)
            .await
            .map(|m| MachineSummary::from(&m));
        // A new machine conflicts only with a volume's other machine.
        reply_on(Subject::Volume, result, state_line)
    }

    /// List the machines of an app (destroyed ones excluded), with their states. Returns
    /// {"machines": [machine summary]}.
    #[tool(annotations(read_only_hint = true))]
    async fn list_machines(&self, Parameters(args): Parameters<AppArgs>) -> CallToolResult {
        let result = self
            .machines
            .list_machines(&args.app, &Default::default())
            .map(|machines| {
                json!({"machines": machines.iter().map(MachineSummary::from).collect::<Vec<_>>()})
            });
        reply(result, |v| {
            format!("{} machines in app {}", count(&v["machines"]), args.app)
        })
    }

    /// Get one machine in full: state, config (image, command, env, guest sizes) and its
    /// recent events (newest first), e.g. to see why it stopped or failed.
    #[tool(annotations(read_only_hint = true))]
    async fn get_machine(&self, Parameters(args): Parameters<MachineArgs>) -> CallToolResult {
        let result = self.machines.get_machine(&args.app, &args.machine_id);
        reply(result, |m| {
            format!("machine {} ({}) is {}", m.id, m.name, m.state)
        })
    }

    /// Start a created or stopped machine (fast: tens of milliseconds); its files are as it
    /// left them. Starting a started machine changes nothing. Returns the machine summary.
    #[tool(annotations(idempotent_hint = true))]
    async fn start_machine(&self, Parameters(args): Parameters<MachineArgs>) -> CallToolResult {
        let result = async {
            self.machines
                .start_machine(&args.app, &args.machine_id, None)
                .await?;
            self.summary(&args.app, &args.machine_id)
        }
        .await;
        reply(result, state_line)
    }

    /// Stop a started machine: its main process gets the stop signal, then is killed after
    /// the timeout. Files persist and a stopped machine uses no CPU or memory; start_machine
    /// resumes it. Stopping a stopped machine changes nothing. Returns the machine summary.
    #[tool(annotations(idempotent_hint = true))]
    async fn stop_machine(&self, Parameters(args): Parameters<StopMachineArgs>) -> CallToolResult {
        let request = StopRequest {
            signal: args.signal,
            timeout: args.timeout_seconds.map(|secs| format!("{secs}s")),
        };
        let result = async {
            self.machines
                .stop_machine(&args.app, &args.machine_id, request, None)
                .await?;
            self.summary(&args.app, &args.machine_id)
        }
        .await;
        reply(result, state_line)
    }

    /// Restart a started machine (stop, then start its main process again); files are kept.
    /// Use it after changing files the main process reads at startup. Returns the machine
    /// summary.
    #[tool]
    async fn restart_machine(&self, Parameters(args): Parameters<MachineArgs>) -> CallToolResult {
        let result = async {
            self.machines
                .restart_machine(&args.app, &args.machine_id, StopRequest::default(), None)
                .await?;
            self.summary(&args.app, &args.machine_id)
        }
        .await;
        reply(result, state_line)
    }

    /// Destroy a machine and delete its files for good. A running machine needs force=true
    /// (or stop_machine first). Returns {"id", "destroyed": true}.
    #[tool(annotations(destructive_hint = true))]
    async fn destroy_machine(
        &self,
        Parameters(args): Parameters<DestroyMachineArgs>,
    ) -> CallToolResult {
        let result = self
            .machines
            .destroy_machine(&args.app, &args.machine_id, args.force, None)
            .await
            .map(|()| json!({"id": args.machine_id, "destroyed": true}));
        reply(result, |v| format!("destroyed machine {}", text(&v["id"])))
    }

    /// Wait until a machine reaches a state (started, stopped, suspended or destroyed), e.g.
    /// until a machine whose command runs to completion has stopped. Fails after
    /// timeout_seconds. Returns the machine summary.
    #[tool(annotations(read_only_hint = true))]
    async fn wait_machine(&self, Parameters(args): Parameters<WaitMachineArgs>) -> CallToolResult {
        let result = self
            .machines
            .wait_machine(
                &args.app,
                &args.machine_id,
                args.state.into(),
                args.timeout_seconds,
                None,
            )
            .await
            .map(|m| MachineSummary::from(&m));
        reply(result, state_line)
    }
}
