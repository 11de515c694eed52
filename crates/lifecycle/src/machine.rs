//! Machines: intents, the steps of their plans, and the one function that
//! decides what an intent does to a machine in a given state.

use crate::operation::{Operation, StepName, Transition};
use crate::refusal::{Reason, Refusal, Wording};
use crate::MachineState;
use roost_types::{MachineConfig, RestartPolicy, RootfsPersist};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use MachineState as S;

/// One idempotent unit of machine lifecycle work. Each checks the host
/// before it acts (is the rootfs mounted? does the container exist?), so
/// running it again after a crash is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Resolve the image and write the layer list and OCI bundle.
    Prepare,
    /// Create the machine's network namespace, veth pair and address (at
    /// create, so that start only joins the namespace).
    ConnectNetwork,
    /// Empty the overlay upper dir: the rootfs goes back to the image.
    ResetRootfs,
    MountRootfs,
    /// Mount the config's volumes on the host (bound into the machine at run).
    AttachVolumes,
    /// Write `config.files` into the rootfs.
    WriteFiles,
    /// Bring the bundle's environment up to date (app secrets and storage
    /// keys set since the bundle was written).
    RefreshEnv,
    /// Create and start the container (adopting one already running).
    Run,
    /// Ask the main process to exit, then kill it after the stop timeout.
    SignalStop,
    DeleteContainer,
    /// Unmount the volumes mounted for the machine.
    DetachVolumes,
    UnmountRootfs,
    /// Record the runtime the update asked for: every step before it drives
    /// the old container with the old runtime, every step after it the new
    /// one.
    SwitchRuntime,
    /// Remove the machine's network namespace and veth, free its address.
    DisconnectNetwork,
    /// Remove every host file of the machine.
    RemoveFiles,
}

impl StepName for Step {
    fn name(self) -> &'static str {
        match self {
            Step::Prepare => "prepare",
            Step::ConnectNetwork => "connect_network",
            Step::ResetRootfs => "reset_rootfs",
            Step::MountRootfs => "mount_rootfs",
            Step::AttachVolumes => "attach_volumes",
            Step::WriteFiles => "write_files",
            Step::RefreshEnv => "refresh_env",
            Step::Run => "run",
            Step::SignalStop => "signal_stop",
            Step::DeleteContainer => "delete_container",
            Step::DetachVolumes => "detach_volumes",
            Step::UnmountRootfs => "unmount_rootfs",
            Step::SwitchRuntime => "switch_runtime",
            Step::DisconnectNetwork => "disconnect_network",
            Step::RemoveFiles => "remove_files",
        }
    }
}

impl Step {
    /// Steps that bring a machine up (it shows `starting` while they run).
    fn starts(self) -> bool {
        matches!(
            self,
            Step::Prepare
                | Step::ConnectNetwork
                | Step::ResetRootfs
                | Step::MountRootfs
                | Step::AttachVolumes
                | Step::WriteFiles
                | Step::RefreshEnv
                | Step::Run
        )
    }
}

/// What takes a machine down: the tail of a stop, and what a failed
/// operation runs before the machine is marked failed.
const TAKE_DOWN: [Step; 3] = [
    Step::DeleteContainer,
    Step::DetachVolumes,
    Step::UnmountRootfs,
];

/// The steps of a start; `reset` first empties the rootfs's upper dir.
fn start_steps(reset: bool) -> Vec<Step> {
    let mut steps = Vec::with_capacity(6);
    if reset {
        steps.push(Step::ResetRootfs);
    }
    steps.extend([
        Step::MountRootfs,
        Step::AttachVolumes,
        Step::WriteFiles,
        Step::RefreshEnv,
        Step::Run,
    ]);
    steps
}

/// The steps of a stop: the signal, then the take-down.
fn stop_steps() -> Vec<Step> {
    let mut steps = vec![Step::SignalStop];
    steps.extend(TAKE_DOWN);
    steps
}

/// The kinds of machine operation, named as Fly names their events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Launch,
    Start,
    Stop,
    Restart,
    Update,
    Destroy,
    /// The main process exited on its own and the machine stays stopped.
    Exit,
}

impl OpKind {
    pub const ALL: [OpKind; 7] = [
        OpKind::Launch,
        OpKind::Start,
        OpKind::Stop,
        OpKind::Restart,
        OpKind::Update,
        OpKind::Destroy,
        OpKind::Exit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Launch => "launch",
            OpKind::Start => "start",
            OpKind::Stop => "stop",
            OpKind::Restart => "restart",
            OpKind::Update => "update",
            OpKind::Destroy => "destroy",
            OpKind::Exit => "exit",
        }
    }
}

/// Who asked for an operation, as events record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Source {
    /// A caller of the API, MCP or the edge proxy.
    #[default]
    #[serde(rename = "user")]
    User,
    /// roost on its own (a main process exited); Fly calls it `flyd`.
    #[serde(rename = "flyd")]
    Platform,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::User => "user",
            Source::Platform => "flyd",
        }
    }
}

/// How a stop asks the main process to exit; `None` fields take the
/// machine's `stop_config`, then SIGTERM and 5 s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopOptions {
    pub signal: Option<i32>,
    pub timeout_ms: Option<u64>,
}

/// Everything an operation needs to run or resume; the durable engine
/// stores it with the operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachinePlan {
    pub kind: OpKind,
    pub steps: Vec<Step>,
    /// Where the machine settles when every step is done.
    pub settle: MachineState,
    /// Signal number for [`Step::SignalStop`].
    #[serde(default)]
    pub stop_signal: Option<i32>,
    #[serde(default)]
    pub stop_timeout_ms: Option<u64>,
    pub source: Source,
    /// The runtime [`Step::SwitchRuntime`] switches to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

impl MachinePlan {
    fn new(kind: OpKind, steps: Vec<Step>, settle: MachineState) -> MachinePlan {
        MachinePlan {
            kind,
            steps,
            settle,
            stop_signal: None,
            stop_timeout_ms: None,
            source: Source::User,
            runtime: None,
        }
    }

    /// The plan with its stop signal and timeout set (the caller resolves
    /// them from the request and the machine's `stop_config`).
    pub fn stopping_with(mut self, stop: StopOptions) -> MachinePlan {
        self.stop_signal = stop.signal;
        self.stop_timeout_ms = stop.timeout_ms;
        self
    }

    /// The state a machine shows while `step` of this plan runs.
    pub fn state_during(&self, step: Step) -> MachineState {
        match self.kind {
            OpKind::Update => S::Replacing,
            OpKind::Destroy => S::Destroying,
            OpKind::Launch if matches!(step, Step::Prepare | Step::ConnectNetwork) => S::Created,
            _ if step.starts() => S::Starting,
            _ => S::Stopping,
        }
    }

    /// The state a machine shows once the plan is recorded, before its
    /// first step runs.
    pub fn first_state(&self) -> MachineState {
        self.steps
            .first()
            .map_or(self.settle, |step| self.state_during(*step))
    }
}

impl Operation for MachinePlan {
    type Step = Step;

    fn kind(&self) -> &'static str {
        self.kind.name()
    }

    fn steps(&self) -> &[Step] {
        &self.steps
    }

    fn compensation(&self) -> &'static [Step] {
        &TAKE_DOWN
    }
}

/// What happens once a main process exited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Start it again (`reset` empties the rootfs first).
    Restart { reset: bool },
    /// Destroy it (`auto_destroy`).
    Destroy,
    /// Leave it stopped.
    Stop,
}

impl AfterExit {
    /// Decides from the machine's restart policy and `auto_destroy`.
    /// `code` is `None` when the exit status could not be observed (the
    /// process exited while roost was down); that counts as a failure.
    pub fn of(config: &MachineConfig, code: Option<i32>, restart_count: u32) -> AfterExit {
        let restart = config.restart.clone().unwrap_or_default();
        let max_retries = restart.max_retries.unwrap_or(DEFAULT_MAX_RETRIES);
        let failed = code != Some(0);
        let again = match restart.policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => failed && restart_count < max_retries,
            RestartPolicy::No => false,
        };
        if again {
            AfterExit::Restart {
                reset: persist(config) == RootfsPersist::Never,
            }
        } else if config.auto_destroy.unwrap_or(false) {
            AfterExit::Destroy
        } else {
            AfterExit::Stop
        }
    }
}

/// Automatic restarts allowed by `on-failure` when `max_retries` is unset.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// How long an automatic restart waits after the `count`-th exit, so a
/// process that dies at once does not spin the host: 200 ms doubling up
/// to 6.4 s.
pub fn restart_backoff(count: u32) -> Duration {
    Duration::from_millis(100u64 << count.min(6))
}

fn persist(config: &MachineConfig) -> RootfsPersist {
    config
        .rootfs
        .as_ref()
        .and_then(|rootfs| rootfs.persist)
        .unwrap_or_default()
}

/// An update, as the transition needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The new config's rootfs policy.
    pub persist: RootfsPersist,
    /// The new config resolves to another image than the machine runs.
    pub image_changed: bool,
    /// The runtime the new config asks for, when it is not the machine's.
    pub switch_runtime: Option<String>,
    /// Leave the machine stopped afterwards.
    pub skip_launch: bool,
}

/// What a caller, or the platform, asks of a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Build a machine just recorded in `created`; `launch` starts it too.
    Create { launch: bool },
    /// Start a machine at rest; `reset` empties its rootfs first.
    Start { reset: bool },
    /// Stop a started machine; the caller sets the plan's stop options.
    Stop,
    /// Stop and start; `reset` empties the rootfs in between.
    Restart { reset: bool },
    /// Replace the config: stop, rebuild, start again unless skipped.
    Update(Update),
    /// Destroy; a started machine needs `force`.
    Destroy { force: bool },
    /// The main process of a started machine exited on its own.
    Exit(AfterExit),
    /// Run a command in the machine.
    Exec,
    /// Send a signal to the main process.
    Signal,
    /// List the machine's processes.
    Processes,
    /// Read or write files in the machine's filesystems.
    Files,
    /// Change metadata or the cordon, which no step acts on.
    Edit,
}

impl Intent {
    /// A start, with the rootfs reset the config's policy asks for: a
    /// stopped machine starts from its image unless `persist` is `always`.
    pub fn start(config: &MachineConfig) -> Intent {
        Intent::Start {
            reset: persist(config) != RootfsPersist::Always,
        }
    }

    /// A restart, which keeps the rootfs unless `persist` is `never`.
    pub fn restart(config: &MachineConfig) -> Intent {
        Intent::Restart {
            reset: persist(config) == RootfsPersist::Never,
        }
    }

    /// The policy of `new` for an update to it.
    pub fn update(new: &MachineConfig, update: Update) -> Intent {
        Intent::Update(Update {
            persist: persist(new),
            ..update
        })
    }
}

/// States a wait can ask for: the ones a machine rests in and a client
/// waits for (Fly's list).
pub const WAITABLE: [MachineState; 4] = [S::Started, S::Stopped, S::Suspended, S::Destroyed];

/// States from which a machine can be started.
const AT_REST: [MachineState; 3] = [S::Created, S::Stopped, S::Failed];
/// States in which a machine exists and no operation runs.
const SETTLED: [MachineState; 4] = [S::Created, S::Started, S::Stopped, S::Failed];

/// Decides what `intent` does to a machine in `state`: the plan to run,
/// nothing to do, or a refusal naming the states it is allowed from.
///
/// This is the machine lifecycle's one table. A machine under an operation
/// (a transitional state) refuses everything; the service only sees one
/// after a failure to record the operation's end.
pub fn transition(state: MachineState, intent: &Intent) -> Result<Transition, Refusal> {
    let refuse = |allowed: &[MachineState], wanted, wording| {
        Refusal::machine(state, allowed, wanted, wording)
    };
    let cannot = |allowed: &[MachineState], wanted| refuse(allowed, wanted, Wording::CannotBe);
    let started_only = |wanted| refuse(&[S::Started], wanted, Wording::NeedsStarted);
    match intent {
        Intent::Create { launch } => match state {
            S::Created => {
                let mut steps = vec![Step::Prepare, Step::ConnectNetwork];
                let settle = if *launch {
                    steps.extend(start_steps(false));
                    S::Started
                } else {
                    S::Created
                };
                Ok(Transition::Run(MachinePlan::new(
                    OpKind::Launch,
                    steps,
                    settle,
                )))
            }
            _ => Err(cannot(&[S::Created], "created")),
        },
        Intent::Start { reset } => match state {
            S::Started => Ok(Transition::Unchanged),
            s if AT_REST.contains(&s) => Ok(Transition::Run(MachinePlan::new(
                OpKind::Start,
                start_steps(*reset),
                S::Started,
            ))),
            _ => Err(cannot(&AT_REST, "started")),
        },
        Intent::Stop => match state {
            S::Started => Ok(Transition::Run(MachinePlan::new(
                OpKind::Stop,
                stop_steps(),
                S::Stopped,
            ))),
            s if AT_REST.contains(&s) => Ok(Transition::Unchanged),
            _ => Err(cannot(&[S::Started], "stopped")),
        },
        Intent::Restart { reset } => match state {
            S::Started => {
                let mut steps = stop_steps();
                steps.extend(start_steps(*reset));
                Ok(Transition::Run(MachinePlan::new(
                    OpKind::Restart,
                    steps,
                    S::Started,
                )))
            }
            _ => Err(refuse(
                &[S::Started],
                "restarted",
                Wording::OnlyAllowed(Some("use start instead")),
            )),
        },
        Intent::Update(update) => match state {
            s if SETTLED.contains(&s) => Ok(Transition::Run(update_plan(s, update))),
            _ => Err(cannot(&SETTLED, "updated")),
        },
        Intent::Destroy { force } => match state {
            S::Started if !force => Err(Refusal::new(
                "machine",
                state.as_str(),
                Reason::NeedsForce,
                &["created", "stopped", "failed"],
                "destroyed",
                Wording::CannotBe,
            )),
            s if SETTLED.contains(&s) => {
                let mut steps = stop_steps();
                steps.extend([Step::DisconnectNetwork, Step::RemoveFiles]);
                let plan = MachinePlan::new(OpKind::Destroy, steps, S::Destroyed);
                Ok(Transition::Run(plan.stopping_with(StopOptions {
                    signal: Some(SIGKILL),
                    timeout_ms: Some(0),
                })))
            }
            _ => Err(cannot(&SETTLED, "destroyed")),
        },
        Intent::Exit(after) => match state {
            S::Started => Ok(Transition::Run(exit_plan(*after))),
            _ => Err(cannot(&[S::Started], "handled as exited")),
        },
        Intent::Exec | Intent::Signal | Intent::Processes => match state {
            S::Started => Ok(Transition::Proceed),
            _ => Err(started_only(match intent {
                Intent::Exec => "exec",
                Intent::Signal => "signal",
                _ => "ps",
            })),
        },
        Intent::Files => match state {
            s if SETTLED.contains(&s) => Ok(Transition::Proceed),
            _ => Err(refuse(&SETTLED, "read or written", Wording::FilesGone)),
        },
        Intent::Edit => match state {
            s if SETTLED.contains(&s) => Ok(Transition::Proceed),
            _ => Err(cannot(&SETTLED, "changed")),
        },
    }
}

/// Signal 9, the destroy's stop signal.
const SIGKILL: i32 = 9;

fn update_plan(state: MachineState, update: &Update) -> MachinePlan {
    let launch = !update.skip_launch && matches!(state, S::Started | S::Created);
    let mut steps = stop_steps();
    if update.switch_runtime.is_some() {
        steps.push(Step::SwitchRuntime);
    }
    if update.image_changed && update.persist != RootfsPersist::Never {
        steps.push(Step::ResetRootfs);
    }
    steps.push(Step::Prepare);
    if launch {
        steps.extend(start_steps(update.persist == RootfsPersist::Never));
    }
    let settle = if launch { S::Started } else { S::Stopped };
    let mut plan = MachinePlan::new(OpKind::Update, steps, settle);
    plan.runtime = update.switch_runtime.clone();
    plan
}

fn exit_plan(after: AfterExit) -> MachinePlan {
    let mut steps = TAKE_DOWN.to_vec();
    let (kind, settle) = match after {
        AfterExit::Restart { reset } => {
            steps.extend(start_steps(reset));
            (OpKind::Restart, S::Started)
        }
        AfterExit::Destroy => {
            steps.extend([Step::DisconnectNetwork, Step::RemoveFiles]);
            (OpKind::Destroy, S::Destroyed)
        }
        AfterExit::Stop => (OpKind::Exit, S::Stopped),
    };
    let mut plan = MachinePlan::new(kind, steps, settle);
    plan.source = Source::Platform;
    plan
}

#[cfg(test)]
mod tests;
